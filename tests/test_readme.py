"""The README's commands are the commands the code takes: every ``deepseek-rag`` and ``python benchmarks/``
command in it is parsed by the CLI's or the script's own parser, and every ``deepseek-rag eval`` line runs on a
tiny BEIR corpus with the flags as written, so a renamed flag or a changed default fails here instead of
silently falsifying a figure in the README."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from deepseek_rag.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CORE_COMMANDS = ("index", "add", "delete", "query", "info", "eval", "ask", "demo")


def _is_command(words: list[str]) -> bool:
    return words[:1] == ["deepseek-rag"] or (words[:1] == ["python"] and len(words) > 1 and
                                              words[1].startswith("benchmarks/") and words[1].endswith(".py"))


def fenced_commands() -> list[list[str]]:
    """Whole commands: the lines of the README's ```bash blocks (comments dropped, ``\\`` continuations joined)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if _is_command(words):
                found.append(words)
    return found


def inline_commands() -> tuple[list[list[str]], list[list[str]]]:
    """Commands in `code spans` of the prose and tables: (whole commands, fragments such as `eval --mode dense`)."""
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    whole, fragments = [], []
    for span in re.findall(r"`([^`]+)`", prose):
        text = re.sub(r"<[^>]+>", "placeholder", " ".join(span.split()))  # `--like <a Flat index>`
        try:
            words = shlex.split(text)
        except ValueError:
            continue
        if words[:1] == ["python"] and _is_command(words):
            whole.append(words)
        elif words[:1] == ["deepseek-rag"] and len(words) > 1:
            fragments.append(words[1:])
        elif words[:1] and words[0] in CORE_COMMANDS and any(w.startswith("--") for w in words):
            fragments.append(words)
    return whole, fragments


def test_the_readme_has_the_commands_this_test_checks():
    fenced = fenced_commands()
    whole, fragments = inline_commands()
    assert sum(w[0] == "deepseek-rag" for w in fenced) >= 12 and sum(w[0] == "python" for w in fenced + whole) >= 8
    assert ["eval", "--chunking", "none", "--index-spec", "Flat", "--mode", "dense", "--dtype", "float32"] in fragments


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A checkout-like folder to run README commands in; ``../shared/datasets/...`` resolves beside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    return repo


def make_paths(words: list[str]) -> None:
    """Every path a command names becomes an empty folder, so parameters that must exist do."""
    for word in words:
        if not word.startswith(("-", "http")) and ("/" in word or word.endswith(".idx")):
            Path(word).mkdir(parents=True, exist_ok=True)


def parse_cli(words: list[str]) -> click.Context:
    """Parse ``deepseek-rag ...`` as the CLI would, without running it."""
    args = words[1:]
    first = next(i for i, word in enumerate(args) if not word.startswith("-"))
    group = cli.make_context("deepseek-rag", args[: first + 1])
    command = cli.get_command(group, args[first])
    assert command is not None, f"README names a command the CLI lacks: {' '.join(words)}"
    return command.make_context(args[first], args[first + 1 :], parent=group)


@pytest.mark.parametrize("words", fenced_commands(), ids=lambda w: " ".join(w)[:80])
def test_every_readme_command_parses(words, workdir, monkeypatch):
    make_paths(words)
    if words[0] == "deepseek-rag":
        parse_cli(words)
    else:
        parse_benchmark(words, monkeypatch)


@pytest.mark.parametrize("words", inline_commands()[0], ids=lambda w: " ".join(w)[:80])
def test_every_benchmark_command_in_the_prose_parses(words, workdir, monkeypatch):
    make_paths(words)
    parse_benchmark(words, monkeypatch)


def test_every_flag_in_a_readme_fragment_exists():
    for fragment in inline_commands()[1]:
        group = cli.make_context("deepseek-rag", [fragment[0]])
        command = cli.get_command(group, fragment[0])
        if command is None and fragment[0] == "finetune":
            continue  # the deepseek-rag-finetune distribution adds it; not installed here
        assert command is not None, fragment
        known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
        unknown = [w for w in fragment if w.startswith("--") and w.split("=")[0] not in known]
        assert not unknown, f"README fragment {' '.join(fragment)!r} uses {unknown}, which `{fragment[0]}` lacks"


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_benchmark(words: list[str], monkeypatch) -> argparse.Namespace:
    """Run a benchmark script's ``main()`` up to its ``parse_args()`` with the README's arguments, then stop."""
    script = ROOT / words[1]
    assert script.is_file(), f"README names {words[1]}, which does not exist"
    monkeypatch.syspath_prepend(str(script.parent))  # scripts import their neighbours (adapter_overhead)
    spec = importlib.util.spec_from_file_location(f"readme_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the dev install has the [bench] extra every script needs
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        self.allow_abbrev = False  # "--limit" must not pass for a renamed "--limit-docs"
        raise _Parsed(real_parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *words[2:]])
    with pytest.raises(_Parsed) as parsed:
        module.main()
    return parsed.value.namespace


def write_tiny_beir(folder: Path) -> None:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs = {"d1": ("Rent", "The tenant pays rent monthly to the landlord."),
            "d2": ("Roof", "The landlord repairs the roof after storms."),
            "d3": ("Notice", "Either party may terminate with ninety days notice.")}
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x})
                                                   for i, (t, x) in docs.items()) + "\n")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "who repairs the roof"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")


EVAL_COMMANDS = [w for w in fenced_commands() if w[:2] == ["deepseek-rag", "eval"]]


@pytest.mark.parametrize("words", EVAL_COMMANDS, ids=lambda w: " ".join(w[2:])[:80])
def test_readme_eval_commands_run_with_the_settings_the_readme_names(words, workdir, tiny_model_dir):
    data = Path(words[words.index("--data") + 1])
    write_tiny_beir(data)
    if "--adapter" in words:  # the README's adapter comes from its `finetune` command: a tiny one stands in
        from deepseek_rag.testing import build_tiny_adapter

        build_tiny_adapter(tiny_model_dir, words[words.index("--adapter") + 1])
    if "--index" in words:  # an index the README builds with its `index` command: one of the tiny corpus stands in
        built = CliRunner().invoke(cli, ["index", str(data / "corpus.jsonl"), "--out", words[words.index("--index") + 1],
                                         "--model", str(tiny_model_dir)])
        assert built.exit_code == 0, built.output
    result = CliRunner().invoke(cli, [*words[1:], "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    flag = lambda name, default: words[words.index(name) + 1] if name in words else default  # noqa: E731
    # What the README's figures assume when a flag is left out: hybrid mode, token chunks (see its tables).
    assert metrics["mode"] == flag("--mode", "hybrid")
    assert metrics["chunking"] == flag("--chunking", "token")
    assert metrics["index_spec"] == flag("--index-spec", "Flat")  # auto picks Flat below 50k chunks
    if "--dtype" in words:
        assert metrics["dtype"] == flag("--dtype", None)
