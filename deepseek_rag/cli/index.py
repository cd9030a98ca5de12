"""``deepseek-rag index`` / ``add`` / ``delete``: build an index directory, and change one in place."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .common import (
    encoder_options,
    index_options,
    load_sources,
    make_encoder,
    make_settings,
    show_progress,
    wait_option,
)


@click.command("index")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Index directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory (published as its next version).")
@click.option("--dense", type=click.Choice(["on", "off", "auto"]), default="on", show_default=True,
              help="Vectors beside BM25 (on); BM25 only, a lexical-only index searched in sparse mode (off); or off "
                   "when the encoder cannot read most of a sample of the corpus's tokens (auto: it says so).")
@index_options
@click.option("--chinese", type=click.Choice(["chars", "search", "precise", "chars+search"]), default=None,
              help="BM25 terms of Chinese text: chars (character unigrams + bigrams, the default), jieba search or "
                   "precise mode, or chars+search (both; best with a fitted query model, see `fit-sparse`).")
@click.option("--bm25-k1", type=click.FloatRange(0), default=None, help="BM25 term-frequency saturation (default 1.5).")
@click.option("--bm25-b", type=click.FloatRange(0, 1), default=None, help="BM25 length normalisation (default 0.75).")
@click.option("--vectors", "vectors", default=None, metavar="URI", envvar="DEEPSEEK_RAG_VECTORS",
              help="Keep vectors and chunks in Milvus: milvus:///path/file.db (milvus-lite, embedded) or "
                   "http://host:19530 (a server, or `milvus-lite server`). Default: FAISS files in --out.")
@click.option("--collection", default=None,
              help="Milvus collection (alias) name; segments are NAME_g000001... (default: --out's folder name).")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS",
              help="Chunk and encode on Dask: local:N (N worker processes here) or tcp://scheduler:8786.")
@encoder_options
@wait_option
@click.pass_context
def index_command(ctx, sources, out, overwrite, dense, index_spec, recall_target, chunking, chunk_tokens, chunk_overlap,
                  headers, chinese, bm25_k1, bm25_b, vectors, collection, dask_address, model, adapter, dtype, device,
                  wait) -> None:
    """Build an index directory from files, folders or BEIR corpus.jsonl files.

    \b
    Examples:
      deepseek-rag index contracts/ --out contracts.idx
      deepseek-rag index corpus.jsonl --out sci.idx --index-spec IVF256,PQ96x8
      deepseek-rag index chinese-laws/ --out laws.idx --dense auto   # BM25 only if MiniLM cannot read it
      deepseek-rag index med/corpus.jsonl --out med.idx --dense off --chinese chars+search --bm25-k1 0.9
      deepseek-rag index corpus.jsonl --out sci.idx --vectors milvus:///data/sci.db --index-spec IVF_SQ8
      deepseek-rag index corpus.jsonl --out sci.idx --dask local:4
    """
    from ..document_index import DocumentIndex
    from ..settings import IndexSettings, VectorStoreSettings
    from ..storage.layout import check_save_target

    # Everything that can be checked is checked before the slow work: the settings, that --out can be written,
    # the Milvus target (reachable, builds the index type, the collection is free), the Dask address.
    settings = make_settings(index_spec, chunking, chunk_tokens, chunk_overlap, headers, recall_target, dense)
    bm25 = {k: v for k, v in (("chinese", chinese), ("k1", bm25_k1), ("b", bm25_b)) if v is not None}
    if bm25:
        settings = IndexSettings.from_dict({**settings.to_dict(), "sparse": {**settings.sparse.to_dict(), **bm25}})
    if vectors is not None:
        store = VectorStoreSettings(backend="milvus", uri=vectors, collection=collection)
        settings = IndexSettings.from_dict({**settings.to_dict(), "vector_store": store.to_dict()})
    elif collection is not None:
        raise click.UsageError("--collection names a Milvus collection; give --vectors URI as well")
    if dask_address is not None:
        from ..ingest.distributed import parse_address

        parse_address(dask_address)
        if dense != "on":
            raise click.UsageError(f"--dask encodes every chunk on the cluster; --dense {dense} builds in one process "
                                   "(leave out --dask, or use --dense on)")
    check_save_target(Path(out), overwrite)
    index = DocumentIndex(make_encoder(model, adapter, dtype, device), settings, lock_timeout=wait)
    index.check_vector_store(out)
    report = load_sources(ctx, sources)
    if not report.documents:
        raise click.ClickException(f"no documents with text found in {', '.join(sources)}")
    started = time.perf_counter()
    if dask_address is None:
        index.add_documents(report.documents, progress=show_progress(ctx))
        if index.dense_note:
            click.echo(f"note: {index.dense_note}", err=True)
    else:
        from ..ingest.distributed import prepare_on_dask

        prepared = prepare_on_dask(report.documents, index.encoder, index.settings, dask_address,
                                   progress=show_progress(ctx))
        for doc_id, reason in prepared.failures:
            click.echo(f"skipped document {doc_id}: {reason}", err=True)
        if not prepared.batch.documents:
            raise click.ClickException("no document could be prepared; see the reasons above")
        index.add_prepared(prepared.batch, prepared.vectors)
    index.save(out, overwrite=overwrite)
    from ..tracking import log_index_build

    log_index_build(index, out)  # when the adapter came from a tracked `deepseek-rag finetune` run
    info = index.info()
    sides = info["index_spec"] if info["dense"] else "lexical-only: BM25, no vectors"
    click.echo(f"indexed {info['documents']} documents as {info['chunks']} chunks ({sides}) "
               f"in {time.perf_counter() - started:.1f}s → {out} (version {info['version']})")


@click.command("add")
@click.argument("index_dir", type=click.Path())
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option("--upsert", is_flag=True, help="Replace documents whose id is already in the index.")
@wait_option
@click.pass_context
def add_command(ctx, index_dir, sources, upsert, wait) -> None:
    """Add documents to an existing index (chunked and embedded as the index was), as a new version.

    \b
    Example:
      deepseek-rag add contracts.idx new-contracts/
    """
    from ..document_index import DocumentIndex

    index = DocumentIndex.load(index_dir, lock_timeout=wait)
    index.lock_for_writing()  # before the slow work: a second writer learns at once who holds the index
    try:
        report = load_sources(ctx, sources)
        add = index.upsert_documents if upsert else index.add_documents
        chunks = add(report.documents, progress=show_progress(ctx))
        index.save()
    finally:
        index.close()
    click.echo(f"added {len(report.documents)} documents ({chunks} chunks) → {index_dir} (version {index.snapshot().version})")


@click.command("delete")
@click.argument("index_dir", type=click.Path())
@click.option("--doc-id", "doc_ids", multiple=True, required=True, help="Document id to delete (repeatable).")
@wait_option
def delete_command(index_dir, doc_ids, wait) -> None:
    """Delete documents by id, as a new version.

    \b
    Example:
      deepseek-rag delete contracts.idx --doc-id old-lease.pdf
    """
    from ..document_index import DocumentIndex

    doc_ids = list(dict.fromkeys(doc_ids))
    index = DocumentIndex.load(index_dir, lock_timeout=wait)
    try:
        chunks = index.delete_documents(doc_ids)
        index.save()
    finally:
        index.close()
    click.echo(f"deleted {len(doc_ids)} documents ({chunks} chunks) from {index_dir} (version {index.snapshot().version})")
