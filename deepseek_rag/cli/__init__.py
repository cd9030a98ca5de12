"""The ``deepseek-rag`` command line: index, add, delete, query, info, eval (and plug-in commands).

A user's mistake ends as a one-line error and exit status 1, never a traceback. Other distributions add
commands through the ``deepseek_rag.commands`` entry-point group (``deepseek-rag finetune``).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import DeepSeekRAGError

logger = logging.getLogger(__name__)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UserErrorGroup(click.Group):
    """Turns this package's errors (and ``ValueError``s from bad input) into one-line click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DeepSeekRAGError, ValueError, FileNotFoundError) as exc:
            if isinstance(exc, click.ClickException):
                raise
            raise click.ClickException(str(exc)) from None


def _quiet_libraries(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


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


def _encoder(model: str | None, adapter: str | None, dtype: str, device: str | None):
    from ..encoding.dual_encoder import DualEncoder, EncoderConfig

    return DualEncoder(EncoderConfig(model=model, adapter=adapter, dtype=dtype, device=device))


def _settings(index_spec: str, chunking: str, chunk_tokens: int, chunk_overlap: int, headers: bool):
    from ..ingest.chunking import ChunkingConfig
    from ..document_index import IndexSettings

    return IndexSettings(
        index_spec=index_spec,
        chunking=ChunkingConfig(mode=chunking, max_tokens=chunk_tokens, overlap=chunk_overlap),
        contextual_headers=headers,
    )


def index_options(func: Any) -> Any:
    """How documents are cut and indexed, shared by ``index`` and ``eval``."""
    func = click.option("--headers/--no-headers", default=True, show_default=True,
                        help="Embed each chunk with its document title and section heading in front.")(func)
    func = click.option("--chunk-overlap", type=int, default=32, show_default=True, help="Tokens shared by neighbouring chunks.")(func)
    func = click.option("--chunk-tokens", type=int, default=256, show_default=True,
                        help="Tokens per chunk (capped at the model's max length).")(func)
    func = click.option("--chunking", type=click.Choice(["token", "none"]), default="token", show_default=True,
                        help="token: overlapping windows snapped to sentences; none: one truncated chunk per document.")(func)
    func = click.option("--index-spec", default="auto", show_default=True,
                        help="FAISS factory string ('Flat', 'IVF1024,PQ96x8', ...) or auto (by corpus size).")(func)
    return func


def retrieval_options(func: Any) -> Any:
    """--mode/--fusion/--sparse-weight, shared by ``query`` and ``eval``."""
    func = click.option("--sparse-weight", type=click.FloatRange(0, 1), default=None,
                        help="Share of the sparse side in hybrid fusion, 0 to 1 (default 0.5).")(func)
    func = click.option("--fusion", type=click.Choice(["rrf", "weighted"]), default=None,
                        help="Hybrid fusion: min-max normalised scores (weighted, default) or reciprocal ranks (rrf).")(func)
    func = click.option("--mode", type=click.Choice(["dense", "sparse", "hybrid"]), default=None,
                        help="Vectors, BM25, or both fused (default: hybrid when the index has a BM25 side).")(func)
    return func


def _retrieval_kwargs(mode: str | None, fusion: str | None, sparse_weight: float | None) -> dict[str, Any]:
    given = {"mode": mode, "fusion": fusion, "sparse_weight": sparse_weight}
    return {k: v for k, v in given.items() if v is not None}


@click.group(cls=UserErrorGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="deepseek-rag")
@click.option("-v", "--verbose", is_flag=True, help="Log progress (INFO) and show progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Chunked long-document retrieval: build an index, query it, measure it.

    \b
    Examples:
      deepseek-rag index contracts/ --out contracts.idx
      deepseek-rag query contracts.idx "Who may terminate the agreement?" --top-k 3
      deepseek-rag eval --data datasets/scifact --json
    """
    ctx.obj = {"verbose": verbose}
    _quiet_libraries(verbose)


@cli.command("index")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory.")
@index_options
@encoder_options
@click.pass_context
def index_command(ctx, sources, out, overwrite, index_spec, chunking, chunk_tokens, chunk_overlap, headers,
                  model, adapter, dtype, device) -> None:
    """Build an index directory from files, folders or BEIR corpus.jsonl files.

    \b
    Examples:
      deepseek-rag index contracts/ --out contracts.idx
      deepseek-rag index corpus.jsonl --out sci.idx --index-spec IVF256,PQ96x8
    """
    from ..document_index import DocumentIndex
    from ..ingest.loaders import load_documents_with_report

    report = load_documents_with_report(sources, progress=ctx.obj["verbose"])
    _report_skipped(report)
    if not report.documents:
        raise click.ClickException(f"no documents with text found in {', '.join(sources)}")
    started = time.perf_counter()
    index = DocumentIndex.build(
        report.documents, _encoder(model, adapter, dtype, device),
        _settings(index_spec, chunking, chunk_tokens, chunk_overlap, headers), progress=ctx.obj["verbose"] or None,
    )
    index.save(out, overwrite=overwrite)
    info = index.info()
    click.echo(f"indexed {info['documents']} documents as {info['chunks']} chunks ({info['index_spec']}) "
               f"in {time.perf_counter() - started:.1f}s → {out}")


def _report_skipped(report: Any) -> None:
    for path, reason in report.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)


@cli.command("add")
@click.argument("index_dir", type=click.Path())
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--upsert", is_flag=True, help="Replace documents whose id is already in the index.")
@click.pass_context
def add_command(ctx, index_dir, sources, upsert) -> None:
    """Add documents to an existing index (chunked and embedded as the index was).

    \b
    Example:
      deepseek-rag add contracts.idx new-contracts/
    """
    from ..document_index import DocumentIndex
    from ..ingest.loaders import load_documents_with_report

    index = DocumentIndex.load(index_dir, writable=True)
    report = load_documents_with_report(sources)
    _report_skipped(report)
    add = index.upsert_documents if upsert else index.add_documents
    chunks = add(report.documents, progress=ctx.obj["verbose"] or None)
    index.save()
    click.echo(f"added {len(report.documents)} documents ({chunks} chunks) → {index_dir}")


@cli.command("delete")
@click.argument("index_dir", type=click.Path())
@click.option("--doc-id", "doc_ids", multiple=True, required=True, help="Document id to delete (repeatable).")
def delete_command(index_dir, doc_ids) -> None:
    """Delete documents by id.

    \b
    Example:
      deepseek-rag delete contracts.idx --doc-id old-lease.pdf
    """
    from ..document_index import DocumentIndex

    index = DocumentIndex.load(index_dir, writable=True)
    chunks = index.delete_documents(doc_ids)
    index.save()
    click.echo(f"deleted {len(doc_ids)} documents ({chunks} chunks) from {index_dir}")


@cli.command("query")
@click.argument("index_dir", type=click.Path())
@click.argument("text")
@click.option("--top-k", type=int, default=5, show_default=True, help="Results to return.")
@click.option("--level", type=click.Choice(["chunk", "document"]), default="chunk", show_default=True)
@click.option("--expand", type=int, default=0, show_default=True, help="Neighbouring chunks to add on each side.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Metadata filter (repeatable).")
@click.option("--focus", "focus_documents", type=int, default=0, show_default=True,
              help="Rank documents first and return chunks of the best N only (0 = off).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@retrieval_options
def query_command(index_dir, text, top_k, level, expand, filters, focus_documents, as_json, mode, fusion, sparse_weight) -> None:
    """Search an index.

    \b
    Examples:
      deepseek-rag query contracts.idx "termination for convenience" --top-k 3
      deepseek-rag query contracts.idx "governing law" --level document --json
      deepseek-rag query contracts.idx "BRCA1 mutation" --mode sparse
      deepseek-rag query contracts.idx "Acme lease: who repairs the roof?" --focus 1
    """
    from dataclasses import asdict

    from ..document_index import DocumentIndex

    retriever = DocumentIndex.load(index_dir).as_retriever(
        top_k=top_k, expand_neighbors=expand, focus_documents=focus_documents,
        **_retrieval_kwargs(mode, fusion, sparse_weight),
    )
    parsed = _parse_filters(filters)
    if level == "document":
        results = retriever.retrieve_documents(text, filters=parsed)
        if as_json:
            click.echo(json.dumps({"query": text, "documents": [asdict(d) for d in results]}, ensure_ascii=False))
            return
        for rank, doc in enumerate(results, 1):
            best = doc.hits[0]
            click.echo(f"{rank}. {doc.doc_id}  score={doc.score:.3f}  best chars {best.start}-{best.end}")
        return
    hits = retriever.retrieve(text, filters=parsed)
    if as_json:
        click.echo(json.dumps({"query": text, "hits": [asdict(h) for h in hits]}, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank}. {hit.doc_id} [chars {hit.start}-{hit.end}] score={hit.score:.3f}")
        click.echo("   " + " ".join(hit.text.split())[:300])


def _parse_filters(filters: tuple[str, ...]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--filter")
        parsed.setdefault(key, []).append(value)
    return parsed


@cli.command("info")
@click.argument("index_dir", type=click.Path())
@click.option("--ids", is_flag=True, help="Also list the document ids.")
def info_command(index_dir, ids) -> None:
    """Show an index's counts, spec, sizes and encoder."""
    from ..document_index import DocumentIndex

    index = DocumentIndex.load(index_dir)
    info = index.info()
    if ids:
        info["document_ids"] = index.document_ids()
    click.echo(json.dumps(info, indent=2, ensure_ascii=False))


@cli.command("eval")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="BEIR folder.")
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--aggregation", type=click.Choice(["max", "softmax", "topk_sum"]), default="max", show_default=True,
              help="How chunk scores make a document score.")
@click.option("--keep-index", type=click.Path(file_okay=False), default=None, help="Save the built index here.")
@click.option("--index", "existing_index", type=click.Path(file_okay=False), default=None,
              help="Score an index built earlier from this corpus (e.g. with --keep-index) instead of building one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@retrieval_options
@index_options
@encoder_options
@click.pass_context
def eval_command(ctx, data, split, aggregation, keep_index, existing_index, as_json, mode, fusion, sparse_weight,
                 index_spec, chunking, chunk_tokens, chunk_overlap, headers, model, adapter, dtype, device) -> None:
    """Index a BEIR corpus and score document ranking (nDCG@10, Recall@10/100, MRR@10, latency).

    \b
    Example:
      deepseek-rag eval --data datasets/scifact --chunking none --index-spec Flat --json
      deepseek-rag eval --data datasets/scifact --index sci.idx --mode sparse
    """
    from ..document_index import DocumentIndex
    from ..evaluation import evaluate_retriever, load_beir_split
    from ..ingest.loaders import load_beir_corpus

    split_data = load_beir_split(data, split)
    encode_seconds = None
    if existing_index:
        index = DocumentIndex.load(existing_index, encoder_overrides={"dtype": dtype, "device": device})
        encoder = index.encoder
    else:
        encoder = _encoder(model, adapter, dtype, device)
        started = time.perf_counter()
        index = DocumentIndex.build(load_beir_corpus(data), encoder,
                                    _settings(index_spec, chunking, chunk_tokens, chunk_overlap, headers),
                                    progress=ctx.obj["verbose"] or None)
        encode_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        saved = index.path if existing_index else index.save(keep_index or Path(tmp) / "index", overwrite=bool(keep_index))
        index_bytes = (saved / "vectors.faiss").stat().st_size
        index = DocumentIndex.load(saved, encoder)
        retriever = index.as_retriever(aggregation=aggregation, **_retrieval_kwargs(mode, fusion, sparse_weight))
        metrics = evaluate_retriever(retriever, split_data)
        info = index.info()
        index.close()
    result = {
        **{k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()},
        "documents": info["documents"], "chunks": info["chunks"], "index_spec": info["index_spec"],
        "index_bytes": index_bytes, "bytes_per_chunk": round(index_bytes / max(1, info["chunks"]), 1),
        "encode_seconds": round(encode_seconds, 2) if encode_seconds else None,
        "chunks_per_second": round(info["chunks"] / encode_seconds, 1) if encode_seconds else None,
        "chunking": index.settings.chunking.mode, "aggregation": aggregation, "dtype": str(encoder.dtype).replace("torch.", ""),
        "mode": retriever.mode, "fusion": retriever.fusion if retriever.mode == "hybrid" else None,
        "sparse_weight": retriever.sparse_weight if retriever.mode == "hybrid" else None,
        "sparse_bytes": info["sparse_bytes"], "split": split, "data": Path(data).name,
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key:>18}: {value}")


from ..generation import ask_command  # noqa: E402 (click + numpy only; LlamaIndex loads only when an LLM is used)

cli.add_command(ask_command)


def _load_plugins() -> None:
    for entry in entry_points(group="deepseek_rag.commands"):
        try:
            cli.add_command(entry.load(), entry.name)
        except Exception as exc:  # a broken plug-in must not take the core CLI down
            logger.warning("could not load command %r from %s: %s", entry.name, entry.value, exc)


_load_plugins()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="deepseek-rag")


if __name__ == "__main__":
    sys.exit(main())
