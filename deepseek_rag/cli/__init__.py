"""The ``deepseek-rag`` command line: one module per command, gathered into one click group here.

A user's mistake ends as a one-line error and exit status 1, never a traceback. Other distributions add
commands through the ``deepseek_rag.commands`` entry-point group (``deepseek-rag finetune``); they are imported
only when their command runs (or help lists them), so ``deepseek-rag query`` never imports the fine-tuning
package, and with an exported encoder neither torch nor transformers.
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from .. import __version__
from .ab_report import ab_report_command
from .ask import ask_command
from .common import CONTEXT_SETTINGS, UserErrorGroup, quiet_libraries
from .compare import compare_command
from .demo import demo_command
from .densify import densify_command
from .eval import eval_command
from .export import export_command
from .fit_sparse import fit_sparse_command
from .index import add_command, delete_command, index_command
from .query import info_command, query_command
from .serve import serve_command

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _plugins() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group="deepseek_rag.commands")}


class PluginGroup(UserErrorGroup):
    """The core commands, plus plug-in commands loaded from their entry points when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        entry = _plugins().get(name)
        if command is not None or entry is None:
            return command
        try:
            command = entry.load()
        except Exception as exc:  # a broken plug-in must not take the core CLI down
            logger.warning("could not load command %r from %s: %s", entry.name, entry.value, exc)
            return None
        self.add_command(command, name)
        return command


@click.group(cls=PluginGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="deepseek-rag")
@click.option("-v", "--verbose", is_flag=True, help="Log progress (INFO) and show progress bars.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars or notes, only results (skipped files and errors are still printed). Progress "
                   "bars show by default when stderr is a terminal.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Chunked long-document retrieval: build an index, query it, measure it.

    \b
    Examples:
      deepseek-rag index contracts/ --out contracts.idx
      deepseek-rag query contracts.idx "Who may terminate the agreement?" --top-k 3
      deepseek-rag eval --data datasets/scifact --json
      deepseek-rag export contracts.idx --format onnx --out contracts-onnx
    """
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet contradict each other; pass one")
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    quiet_libraries(verbose)


for command in (index_command, add_command, delete_command, query_command, info_command, eval_command, ask_command,
                serve_command, compare_command, ab_report_command, export_command, demo_command, densify_command,
                fit_sparse_command):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="deepseek-rag")


if __name__ == "__main__":
    sys.exit(main())
