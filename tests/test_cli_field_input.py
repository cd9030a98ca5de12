"""Bad input from the field, through the command line: each case ended in a traceback, a silent wrong answer
or minutes of silence on the first release; each is now a clear line, valid output, or progress on a terminal."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
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
def test_a_jsonl_row_with_a_lone_surrogate_is_skipped_and_the_rest_indexed(tiny_model_dir, tmp_path):
    rows = ['{"_id": "ok", "text": "The tenant pays rent."}', '{"_id": "half", "text": "Broken \\ud83d emoji."}']
    (tmp_path / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    result = run("index", tmp_path / "corpus.jsonl", "--out", tmp_path / "idx", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output  # first release: tokenizer TypeError, nothing indexed
    assert result.stdout.startswith("indexed 1 documents")
    assert f"skipped {tmp_path / 'corpus.jsonl'}:2: row field 'text' holds U+D83D" in result.stderr


def test_invalid_utf8_in_a_query_argument_is_a_one_line_error(built):
    query = os.fsdecode(b"caf\xe9 rent")  # what Python makes of the bytes a Latin-1 terminal sends
    error = one_line_error(run("query", built, query))  # first release: a tokenizer traceback
    assert "byte 0xE9 at character 3, which is not valid UTF-8" in error and "LANG" in error
    assert "not valid UTF-8" in one_line_error(run("ask", built, query))
    assert "byte 0xE9" in one_line_error(run("query", built, "rent", "--filter", os.fsdecode(b"party=caf\xe9")))


def test_a_legacy_encoding_is_indexed_and_named(tiny_model_dir, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "fr.txt").write_bytes("Café société: le locataire paie le loyer.".encode("cp1252"))
    result = run("index", tmp_path / "src", "--out", tmp_path / "idx", "--model", tiny_model_dir)
    assert result.exit_code == 0 and result.stdout.startswith("indexed 1 documents"), result.output
    assert "fr.txt (cp1252)" in result.stderr
    text = DocumentIndex.load(tmp_path / "idx", writable=False).get_document("fr.txt").text
    assert text.startswith("Café société")


def test_a_fifo_given_directly_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")
    error = one_line_error(run("index", tmp_path / "pipe.txt", "--out", tmp_path / "idx"))
    assert "is a FIFO (named pipe), not a regular file" in error  # first release: "does not exist"


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


def test_filters_work_on_a_first_release_store_with_bare_nan(legacy_with_nan):
    # SQLite's JSON functions refuse bare NaN ("malformed JSON" traceback): such a store is filtered in Python.
    found = run("query", legacy_with_nan, "who repairs the roof?", "--filter", "party=globex", "--json")
    assert found.exit_code == 0, found.output
    assert {h["doc_id"] for h in strict_json(found.stdout)["hits"]} == {"lease.txt", "nda.txt", "clinic.txt"}
    none = run("query", legacy_with_nan, "roof", "--filter", '{"cap": {"$gt": 0}}', "--json")
    assert none.exit_code == 0 and strict_json(none.stdout)["hits"] == [] and none.stderr == ""


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


@pytest.fixture
def unsupported(tmp_path) -> Path:
    """A file the loader skips with a line on stderr: if that line shows, the sources were loaded."""
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    return tmp_path / "image.png"


def test_index_out_under_a_file_fails_before_any_work(corpus, unsupported, tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    result = run("index", corpus, unsupported, "--out", tmp_path / "notes.txt" / "idx")
    # first release: NotADirectoryError traceback after loading and encoding everything
    error = one_line_error(result)  # the whole of stderr: no "skipped image.png" line, nothing was loaded
    assert f"{tmp_path / 'notes.txt'} is a file, not a directory" in error


def test_index_out_into_a_non_index_folder_fails_before_any_work(corpus, unsupported, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("my thesis")
    monkeypatch.chdir(tmp_path / "work")
    assert "is not empty" in one_line_error(run("index", corpus, unsupported, "--out", "."))
    assert "is not an index directory; refusing to overwrite it" in one_line_error(
        run("index", corpus, unsupported, "--out", ".", "--overwrite"))
    assert os.listdir(".") == ["thesis.tex"]


def test_index_out_dot_from_inside_an_index_replaces_it(built, corpus, tiny_model_dir, tmp_path, monkeypatch):
    shutil.copytree(built, tmp_path / "copy")
    monkeypatch.chdir(tmp_path / "copy")
    result = run("-q", "index", corpus, "--out", ".", "--overwrite", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output  # first release: "PosixPath('.') has an empty name"
    assert result.stdout.startswith("indexed 3 documents") and "→ . (version 2)" in result.stdout


def read_only_prefix(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only, for root too (a read-only bind mount)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to make a read-only mount as root")
    return ["unshare", "-m", "sh", "-c", f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" '
            '&& exec "$@"', "sh"]


def test_index_out_on_a_read_only_folder_fails_before_any_work(corpus, unsupported, tiny_model_dir, tmp_path):
    (tmp_path / "ro").mkdir()
    prefix = read_only_prefix(tmp_path / "ro")
    done = subprocess.run([*prefix, sys.executable, "-m", "deepseek_rag.cli", "index", str(corpus), str(unsupported),
                           "--out", str(tmp_path / "ro" / "idx"), "--model", str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=240)
    if done.returncode != 1 and "mount" in done.stderr:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    # first release: an OSError traceback after all the encoding
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"Error: cannot write the index to {tmp_path / 'ro' / 'idx'}")
    assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr
    assert done.stderr.count("\n") == 1  # no "skipped image.png" line: the sources were not even loaded


# ---------------------------------------------------------------------------------------------- 6. small ones
def test_chunk_tokens_below_sixteen_index(corpus, tiny_model_dir, tmp_path):
    result = run("-q", "index", corpus, "--out", tmp_path / "idx", "--model", tiny_model_dir, "--chunk-tokens", "8")
    assert result.exit_code == 0, result.output  # first release: "min_tokens must be in [0, max_tokens=8]"
    index = DocumentIndex.load(tmp_path / "idx", writable=False)
    chunking = index.settings.chunking
    assert (chunking.max_tokens, chunking.overlap, chunking.min_tokens) == (8, 4, 8)
    tokenizer = index.encoder.tokenizer
    for batch in index.store.iter_chunks():
        assert all(len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 8 for c in batch)


@pytest.mark.parametrize(("given", "spec"), [("auto", "Flat"), ("IVF2,Flat", "IVF2,Flat")])
def test_an_emptied_index_reports_its_spec_and_takes_new_documents(given, spec, tiny_model_dir, tmp_path):
    folder = tmp_path / "idx"
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"d{i}.txt").write_text(f"Clause {i}: the tenant repairs the roof and pays the rent on day {i}.")
    assert run("-q", "index", corpus, "--out", folder, "--model", tiny_model_dir, "--index-spec", given).exit_code == 0
    deleted = run("delete", folder, *[a for i in range(4) for a in ("--doc-id", f"d{i}.txt")], "--doc-id", "d0.txt")
    assert deleted.exit_code == 0 and deleted.stdout.startswith("deleted 4 documents")  # first release: "5 documents"
    info = strict_json(run("info", folder).stdout)
    assert info["index_spec"] == spec and info["documents"] == 0  # first release: spec "auto", 0 bytes
    current = json.loads((folder / "CURRENT").read_text())["version"]
    record = json.loads((folder / "versions" / f"v{current:06d}.json").read_text())
    assert record["vectors"]["spec"] == spec and record["segments"] == []  # the version holds no vectors...
    assert info["index_bytes"] == 0 and info["bytes_on_disk"] > 0  # ...and says so; the directory is not empty
    (tmp_path / "new.txt").write_text("A new clause about parking spaces.")
    added = run("add", folder, tmp_path / "new.txt")  # first release, IVF: "IVF2 needs at least 2 vectors"
    assert added.exit_code == 0, added.output
    hits = strict_json(run("query", folder, "parking", "--json").stdout)["hits"]
    assert [h["doc_id"] for h in hits] == ["new.txt"]


# ---------------------------------------------------------------------------------------------- 8. progress
def test_quiet_prints_only_the_result_line(corpus, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("deepseek_rag.cli.common.stderr_is_terminal", lambda: True)
    result = run("--quiet", "index", corpus, "--out", tmp_path / "idx", "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout.count("\n") == 1 and result.stdout.startswith("indexed 3 documents")


def test_progress_shows_on_a_terminal_and_not_in_a_pipe(corpus, tiny_model_dir, tmp_path, monkeypatch):
    piped = run("index", corpus, "--out", tmp_path / "piped", "--model", tiny_model_dir)
    assert piped.exit_code == 0 and piped.stderr == ""  # stderr is not a terminal here: no bars
    monkeypatch.setattr("deepseek_rag.cli.common.stderr_is_terminal", lambda: True)
    shown = run("index", corpus, "--out", tmp_path / "terminal", "--model", tiny_model_dir)
    assert shown.exit_code == 0, shown.output  # first release: silence without -v
    assert "Loading: 100%" in shown.stderr and "3/3" in shown.stderr and "encode documents: 100%" in shown.stderr
