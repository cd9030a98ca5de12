"""Bad input from the field, through the command line: each case ended in a traceback, a silent wrong answer
or minutes of silence on the first release; each is now a clear line, valid output, or progress on a terminal."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.cli import cli
from test_loaders import write_pdf

FIXTURE = Path(__file__).parent / "fixtures" / "format1" / "index"


def strict_json(text: str):
    """Parse as every other JSON parser would: bare NaN / Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def run(*args: str, **options):
    return CliRunner().invoke(cli, [str(a) for a in args], **options)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("field-corpus")
    (folder / "lease.md").write_text("# Rent\nThe tenant pays rent monthly.\n\n# Repairs\nThe landlord repairs the roof.\n")
    (folder / "nda.txt").write_text("Confidential information stays secret for two years.", encoding="utf-8")
    write_pdf(folder / "paper.pdf", ["A one page paper on sample sizes and statistical power."])
    return folder


@pytest.fixture(scope="module")
def built(corpus, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("field-idx") / "index"
    result = run("index", corpus, "--out", out, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------------------------- 1. loaders
def test_invalid_utf8_in_a_query_argument_is_a_one_line_error(built):
    query = os.fsdecode(b"caf\xe9 rent")  # what Python makes of the bytes a Latin-1 terminal sends
    error = one_line_error(run("query", built, query))  # first release: a tokenizer traceback
    assert "byte 0xE9 at character 3, which is not valid UTF-8" in error and "LANG" in error
    assert "not valid UTF-8" in one_line_error(run("ask", built, query))
    assert "byte 0xE9" in one_line_error(run("query", built, "rent", "--filter", os.fsdecode(b"party=caf\xe9")))


# ---------------------------------------------------------------------------------------------- 4. filters
def test_a_filter_on_a_key_no_document_has_says_so(built):
    result = run("query", built, "rent", "--filter", "filetype=.txt")
    assert result.exit_code == 0 and result.stdout == ""  # first release: nothing at all
    assert f"no document in {built} has the metadata key 'filetype'" in result.stderr
    assert "file_type" in result.stderr  # the key that was meant is listed
    as_json = run("query", built, "rent", "--filter", "filetype=.txt", "--json", "--level", "document")
    assert strict_json(as_json.stdout)["documents"] == [] and "'filetype'" in as_json.stderr
    known = run("query", built, "rent", "--filter", "file_type=.docx")  # a known key, no such value: no note
    assert known.exit_code == 0 and known.stdout == "" and known.stderr == ""


def test_filter_values_are_read_as_json_scalars(built):
    number = strict_json(run("query", built, "sample size", "--filter", "pages=1", "--json").stdout)
    assert {h["doc_id"] for h in number["hits"]} == {"paper.pdf"}  # first release: "1" never equals 1
    string = run("query", built, "sample size", "--filter", 'pages="1"', "--json")
    assert strict_json(string.stdout)["hits"] == [] and string.stderr == ""
    any_of = strict_json(run("query", built, "rent", "--filter", "file_type=.md", "--filter", "file_type=.pdf",
                             "--json", "--top-k", "10").stdout)
    assert {h["doc_id"] for h in any_of["hits"]} == {"lease.md", "paper.pdf"}


def test_metadata_keys_leave_out_deleted_documents(tiny_model_dir):
    index = DocumentIndex(DualEncoder(model=str(tiny_model_dir)))
    index.add_documents([Document("a", "Alpha text.", {"party": "acme"}), Document("b", "Beta text.", {"year": 2020})])
    assert index.snapshot().metadata_keys() >= {"party", "year"}
    index.delete_documents(["b"])
    assert "year" not in index.snapshot().metadata_keys() and "party" in index.snapshot().metadata_keys()
    hits = index.as_retriever(top_k=2).retrieve("text", filters={"party": np.str_("acme")})
    assert [h.doc_id for h in hits] == ["a"]  # numpy scalars work as filter values, end to end


# ---------------------------------------------------------------------------------------------- 5. output
@pytest.fixture
def legacy_with_nan(tiny_model_dir, tmp_path):
    """A first-release directory whose metadata holds NaN and Infinity, as the first release wrote them."""
    folder = tmp_path / "legacy"
    shutil.copytree(FIXTURE, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoder"]["config"]["model"] = str(tiny_model_dir)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with sqlite3.connect(folder / "chunks.sqlite") as conn:
        conn.execute("""UPDATE documents SET metadata = '{"party": "globex", "score": NaN, "cap": -Infinity}'""")
    return folder


@pytest.mark.parametrize("level", ["chunk", "document"])
def test_query_json_is_valid_when_metadata_holds_nan(legacy_with_nan, level):
    result = run("query", legacy_with_nan, "who repairs the roof?", "--json", "--level", level)
    assert result.exit_code == 0, result.output
    data = strict_json(result.stdout)  # first release: bare NaN, refused by every other parser
    first = data["hits"][0] if level == "chunk" else data["documents"][0]["hits"][0]
    assert first["metadata"]["score"] == "nan" and first["metadata"]["cap"] == "-inf"
    assert first["metadata"]["party"] == "globex"
    assert "score" in DocumentIndex.load(legacy_with_nan, writable=False).snapshot().metadata_keys()


def test_ask_eval_and_info_json_are_valid_with_non_finite_numbers(built, monkeypatch, tiny_model_dir, tmp_path):
    from deepseek_rag.generation import Answer, Source

    monkeypatch.setattr("deepseek_rag.cli.ask.answer",
                        lambda *a, **k: Answer("An answer.", [Source("nda.txt", 0, 5, math.nan, "Confi")], "llm"))
    data = strict_json(run("ask", built, "how long?", "--json").stdout)
    assert data["sources"][0]["score"] == "nan"

    monkeypatch.setattr("deepseek_rag.evaluation.evaluate_retriever",
                        lambda *a, **k: {"ndcg@10": math.nan, "query_ms_p99": math.inf, "queries": 1})
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "The tenant pays rent monthly."}\n')
    (beir / "queries.jsonl").write_text('{"_id": "q1", "text": "rent"}\n')
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    metrics = strict_json(run("eval", "--data", beir, "--model", tiny_model_dir, "--json").stdout)
    assert metrics["ndcg@10"] == "nan" and metrics["query_ms_p99"] == "inf"

    real_info = DocumentIndex.info
    monkeypatch.setattr(DocumentIndex, "info", lambda self: {**real_info(self), "sparse_bytes": math.nan})
    assert strict_json(run("info", built).stdout)["sparse_bytes"] == "nan"


def test_a_nan_bm25_parameter_is_refused():
    from deepseek_rag import SparseConfig
    from deepseek_rag.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="k1=nan"):  # first release: every BM25 score NaN
        SparseConfig(k1=math.nan)
