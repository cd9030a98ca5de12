"""What the commands share: the error-to-message group, logging set-up, and the option groups."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from ..errors import DeepSeekRAGError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserErrorGroup(click.Group):
    """Turns this package's errors (and ``ValueError``s from bad input) into one-line click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DeepSeekRAGError, ValueError, FileNotFoundError, PermissionError) as exc:
            if isinstance(exc, click.ClickException):
                raise
            raise click.ClickException(str(exc)) from None


def quiet_libraries(verbose: bool) -> None:
    """Log at INFO with ``-v``, else WARNING; silence transformers' chatter without importing it.

    transformers is imported only by the torch encoder (importing it here would cost ~0.5 s, and with torch
    installed load torch on an ONNX-only path); it reads ``TRANSFORMERS_VERBOSITY`` when it is imported. Its
    "Loading weights" bar follows this package's log level (``torch_backend.quiet_loading``).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.set_verbosity_error()


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (where progress bars belong)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def show_progress(ctx: click.Context) -> bool:
    """Progress bars for long work: on a terminal by default or with ``-v``; never with ``-q``."""
    obj = ctx.find_root().obj or {}
    if obj.get("quiet"):
        return False
    return bool(obj.get("verbose")) or stderr_is_terminal()


def is_quiet(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("quiet"))


def encoder_options(func: Any) -> Any:
    """--model/--adapter/--dtype/--device, shared by every command that builds an encoder."""
    func = click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available).")(func)
    func = click.option(
        "--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True,
        help="Encoder precision; auto = bf16/fp16 on CUDA, bf16 on CPUs with native bf16, else float32.",
    )(func)
    func = click.option("--adapter", type=click.Path(exists=True, file_okay=False), default=None,
                        help="LoRA adapter folder written by `deepseek-rag finetune`.")(func)
    func = click.option("--model", envvar="DEEPSEEK_RAG_MODEL", default=None,
                        help="Local transformers / sentence-transformers folder (default: bundled all-MiniLM-L6-v2).")(func)
    return func


def search_encoder_options(func: Any) -> Any:
    """--model/--allow-int8/--threads, for commands that open an index to search it."""
    func = click.option("--threads", type=click.IntRange(0), default=None, envvar="DEEPSEEK_RAG_ONNX_THREADS",
                        help="ONNX Runtime intra-op threads (default: one per physical core).")(func)
    func = click.option("--allow-int8", is_flag=True,
                        help="Let an int8 export search an index built in float32 (or the reverse); its vectors "
                             "differ slightly.")(func)
    func = click.option("--model", default=None,
                        help="Search with this encoder folder instead of the one the index names: the same model, "
                             "e.g. its export (`deepseek-rag export INDEX --out DIR`).")(func)
    return func


def search_overrides(model: str | None, allow_int8: bool, threads: int | None) -> dict[str, Any]:
    given = {"model": model, "allow_precision_mismatch": allow_int8 or None, "threads": threads}
    return {k: v for k, v in given.items() if v is not None}


def make_encoder(model: str | None, adapter: str | None, dtype: str, device: str | None):
    from ..encoding.dual_encoder import DualEncoder, EncoderConfig

    return DualEncoder(EncoderConfig(model=model, adapter=adapter, dtype=dtype, device=device))


def index_options(func: Any) -> Any:
    """How documents are cut and indexed, shared by ``index`` and ``eval``."""
    func = click.option("--headers/--no-headers", default=True, show_default=True,
                        help="Embed each chunk with its document title and section heading in front.")(func)
    func = click.option("--chunk-overlap", type=int, default=None,
                        help="Tokens shared by neighbouring chunks (default: 32, at most half of --chunk-tokens).")(func)
    func = click.option("--chunk-tokens", type=int, default=256, show_default=True,
                        help="Tokens per chunk (capped at the model's max length).")(func)
    func = click.option("--chunking", type=click.Choice(["token", "none"]), default="token", show_default=True,
                        help="token: overlapping windows snapped to sentences; none: one truncated chunk per document.")(func)
    func = click.option("--recall-target", type=click.FloatRange(0, 1, min_open=True), default=None,
                        help="Recall@10 vs exact (on held-out chunk vectors) that an IVF or two-level index's nprobe "
                             "and re-rank depth are chosen for at build time (default 0.98).")(func)
    func = click.option("--index-spec", default="auto", show_default=True,
                        help="FAISS factory string ('Flat', 'IVF1024,PQ96x8', 'IVF1024,PQ192x4fs,Refine(SQ8)', ...) "
                             "or auto (by corpus size).")(func)
    return func


def make_settings(index_spec: str, chunking: str, chunk_tokens: int, chunk_overlap: int | None, headers: bool,
                  recall_target: float | None = None, dense: str = "on"):
    """The settings the index options spell. What the options cannot set follows ``--chunk-tokens``: the overlap
    (when not given) and the smallest trailing chunk are at most half of it and all of it, so any size works."""
    from ..document_index import IndexSettings
    from ..ingest.chunking import ChunkingConfig
    from ..vectors.calibration import VectorSearchSettings

    defaults = ChunkingConfig()
    overlap = chunk_overlap if chunk_overlap is not None else min(defaults.overlap, max(0, chunk_tokens // 2))
    return IndexSettings(
        index_spec=index_spec,
        chunking=ChunkingConfig(mode=chunking, max_tokens=chunk_tokens, overlap=overlap,
                                min_tokens=min(defaults.min_tokens, max(0, chunk_tokens))),
        contextual_headers=headers,
        dense=dense,
        **({} if recall_target is None else {"vector_search": VectorSearchSettings(recall_target=recall_target)}),
    )


def retrieval_options(func: Any) -> Any:
    """--mode/--fusion/--sparse-weight, shared by ``query`` and ``eval``."""
    func = click.option("--sparse-weight", type=click.FloatRange(0, 1), default=None,
                        help="Share of the sparse side in hybrid fusion, 0 to 1 (default 0.5).")(func)
    func = click.option("--fusion", type=click.Choice(["rrf", "weighted"]), default=None,
                        help="Hybrid fusion: min-max normalised scores (weighted, default) or reciprocal ranks (rrf).")(func)
    func = click.option("--mode", type=click.Choice(["dense", "sparse", "hybrid"]), default=None,
                        help="Vectors, BM25, or both fused (default: hybrid when the index has a BM25 side).")(func)
    return func


def retrieval_kwargs(mode: str | None, fusion: str | None, sparse_weight: float | None) -> dict[str, Any]:
    given = {"mode": mode, "fusion": fusion, "sparse_weight": sparse_weight}
    return {k: v for k, v in given.items() if v is not None}


def wait_option(func: Any) -> Any:
    """--wait: how long a write waits for another writer to finish."""
    return click.option(
        "--wait", type=click.FloatRange(0), default=0.0, show_default=True, envvar="DEEPSEEK_RAG_LOCK_WAIT",
        help="Seconds to wait when another process is writing the index (then a clear error naming it).",
    )(func)


def echo_json(value: Any, **options: Any) -> None:
    """Print ``value`` as JSON any parser reads: NaN and infinities as the strings "nan", "inf", "-inf"."""
    from ..jsonable import dumps

    click.echo(dumps(value, **options))


def load_sources(ctx: click.Context, sources: Any) -> Any:
    """Load files for ``index`` / ``add`` (progress as :func:`show_progress` says) and print what was skipped.

    The loaders also log each skip; that line is dropped while the command prints its own.
    """
    from ..ingest.loaders import load_documents_with_report

    loaders = logging.getLogger("deepseek_rag.ingest.loaders")
    loaders.addFilter(_not_a_reported_skip)
    try:
        report = load_documents_with_report(sources, progress=show_progress(ctx))
    finally:
        loaders.removeFilter(_not_a_reported_skip)
    report_load(report, quiet=is_quiet(ctx))
    return report


def _not_a_reported_skip(record: logging.LogRecord) -> bool:
    return not getattr(record, "skipped", False)


def report_load(report: Any, quiet: bool = False) -> None:
    """Print each skipped file or row (always) and, unless ``quiet``, which files were not UTF-8, to stderr."""
    for path, reason in report.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    if report.encodings and not quiet:
        named = ", ".join(f"{path} ({encoding})" for path, encoding in list(report.encodings.items())[:5])
        more = f" and {len(report.encodings) - 5} more" if len(report.encodings) > 5 else ""
        click.echo(f"note: {len(report.encodings)} file(s) were not UTF-8 and were decoded as detected: {named}{more}",
                   err=True)
