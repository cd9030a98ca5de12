"""The command line: the whole path on a small corpus, and one-line errors for user mistakes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepseek_rag import __version__
from deepseek_rag.cli import cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "lease.md").write_text("# Rent\nThe tenant pays rent monthly.\n\n# Repairs\nThe landlord repairs the roof.\n")
    (folder / "nda.txt").write_text("Confidential information stays secret for two years.", encoding="utf-8")
    (folder / "合同.txt").write_bytes("本合同自双方签字之日起生效。".encode("gb18030"))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    return folder


@pytest.fixture(scope="module")
def built(corpus, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "index"
    result = CliRunner().invoke(cli, ["index", str(corpus), "--out", str(out), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "indexed 3 documents" in result.output and "image.png" in result.output
    return out


def test_query_info_add_delete(built, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["query", str(built), "who repairs the roof", "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert len(hits) == 2 and {"doc_id", "start", "end", "score", "text"} <= set(hits[0])

    extra = tmp_path / "extra.txt"
    extra.write_text("Payment is due within thirty days.")
    assert runner.invoke(cli, ["add", str(built), str(extra)]).exit_code == 0
    info = json.loads(runner.invoke(cli, ["info", str(built), "--ids"]).output)
    assert "extra.txt" in info["document_ids"] and info["documents"] == 4

    assert runner.invoke(cli, ["delete", str(built), "--doc-id", "extra.txt"]).exit_code == 0
    docs = json.loads(runner.invoke(cli, ["query", str(built), "payment", "--level", "document", "--json"]).output)
    assert "extra.txt" not in {d["doc_id"] for d in docs["documents"]}

    filtered = runner.invoke(cli, ["query", str(built), "contract", "--filter", "file_type=.md", "--json"])
    assert {h["doc_id"] for h in json.loads(filtered.output)["hits"]} == {"lease.md"}

    focused = runner.invoke(cli, ["query", str(built), "landlord repairs the roof", "--focus", "1", "--top-k", "5", "--json"])
    assert focused.exit_code == 0, focused.output
    assert {h["doc_id"] for h in json.loads(focused.output)["hits"]} == {"lease.md"}
    auto = runner.invoke(cli, ["query", str(built), "landlord repairs the roof", "--focus", "auto", "--json"])
    assert auto.exit_code == 0 and json.loads(auto.output) == json.loads(
        runner.invoke(cli, ["query", str(built), "landlord repairs the roof", "--json"]).output)  # auto is the default


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", "{idx}", "rent", "--top-k", "0"], "top_k=0"),
        (["query", "{missing}", "rent"], "does not exist"),
        (["delete", "{idx}", "--doc-id", "nope"], "no document with id 'nope'"),
        (["index", "{missing}", "--out", "{tmp}/x"], "does not exist"),
        (["query", "{idx}", "{big}"], "characters"),
        (["query", "{idx}", "rent", "--focus", "-1"], "focus_documents=-1"),
        (["query", "{idx}", "rent", "--focus", "often"], "focus_documents='often' must be 'auto'"),
    ],
)
def test_user_mistakes_are_one_line_errors(built, tmp_path, args, message):
    values = {"idx": str(built), "missing": str(tmp_path / "missing"), "tmp": str(tmp_path), "big": "x" * 1_048_576}
    result = CliRunner().invoke(cli, [a.format(**values) for a in args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert result.output.startswith("Error:") and result.output.count("\n") == 1


def test_eval_prints_the_metrics_json(tiny_model_dir, tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"_id": "d1", "title": "Rent", "text": "The tenant pays rent monthly."},
        {"_id": "d2", "title": "Roof", "text": "The landlord repairs the roof."},
    ]))
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "The tenant pays rent monthly."}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    result = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path), "--model", str(tiny_model_dir), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10", "queries", "documents", "chunks", "index_spec",
                "index_bytes", "encode_seconds", "query_ms_p50", "query_ms_p99"):
        assert key in metrics
    assert metrics["queries"] == 1 and metrics["documents"] == 2 and metrics["recall@10"] == 1.0


def test_eval_scores_a_saved_index_with_a_query_side_adapter(tiny_model_dir, tmp_path):
    """A query-side adapter leaves document vectors alone, so a saved base index is scored as it is; an adapter
    that changes the document side is refused with the index named."""
    from deepseek_rag.testing import build_tiny_adapter

    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"clause {i} rent"})
                                                 for i in range(5)))
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "clause 3 rent"}\n')
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    runner = CliRunner()
    saved = tmp_path / "idx"
    base = runner.invoke(cli, ["eval", "--data", str(data), "--model", str(tiny_model_dir), "--mode", "dense",
                               "--keep-index", str(saved), "--json"])
    assert base.exit_code == 0, base.output
    query_side = build_tiny_adapter(tiny_model_dir, tmp_path / "q-adapter", sides=("query",))
    args = ["eval", "--data", str(data), "--index", str(saved), "--mode", "dense", "--json", "--adapter"]
    plain = json.loads(runner.invoke(cli, args[:-1]).output)
    adapted = runner.invoke(cli, [*args, str(query_side)])
    assert adapted.exit_code == 0, adapted.output
    assert json.loads(adapted.output)["chunks"] == plain["chunks"] == 5
    both = build_tiny_adapter(tiny_model_dir, tmp_path / "shared-adapter")
    refused = runner.invoke(cli, [*args, str(both)])
    assert refused.exit_code == 1 and refused.output.startswith("Error:") and str(saved) in refused.output


def test_help_and_version():
    runner = CliRunner()
    assert "Examples" in runner.invoke(cli, ["-h"]).output
    assert __version__ in runner.invoke(cli, ["--version"]).output
    assert "--index-spec" in runner.invoke(cli, ["index", "--help"]).output
