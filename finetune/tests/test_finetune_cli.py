from __future__ import annotations

import json

from click.testing import CliRunner

from deepseek_rag.cli import cli
from deepseek_rag_finetune.pairs import write_jsonl_pairs
from finetune_toy import toy_pairs


def test_help_shows_examples():
    result = CliRunner().invoke(cli, ["finetune", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--hard-negatives" in result.output
    assert "Example" in CliRunner().invoke(cli, ["finetune-export", "--help"]).output


def test_finetune_then_export(tiny_model_dir, tmp_path):
    pairs = write_jsonl_pairs(toy_pairs(), tmp_path / "pairs.jsonl")
    out, merged = tmp_path / "adapter", tmp_path / "merged"
    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs), "--out", str(out), "--model", str(tiny_model_dir),
                                      "--max-steps", "2", "--batch-size", "8", "--no-progress", "--no-mlflow",
                                      "--merge-to", str(merged)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[0])
    assert summary["steps"] == 2
    assert (out / "deepseek_rag_adapter.json").is_file() and (merged / "modules.json").is_file()
    again = CliRunner().invoke(cli, ["finetune-export", str(out), "--out", str(merged), "--model", str(tiny_model_dir)])
    assert again.exit_code == 1 and "not empty" in again.output


def test_user_errors_are_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\nnot json\n')
    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "line 2" in result.output and "Traceback" not in result.output

    few = write_jsonl_pairs(toy_pairs()[:3], tmp_path / "few.jsonl")
    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(few), "--out", str(tmp_path / "o"),
                                      "--model", str(tiny_model_dir), "--dev-fraction", "0"])
    assert result.exit_code == 1 and "lower --batch-size" in result.output

    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(few), "--out", str(tmp_path / "o"),
                                      "--resume", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output

    result = CliRunner().invoke(cli, ["finetune", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "exactly one of" in result.output
