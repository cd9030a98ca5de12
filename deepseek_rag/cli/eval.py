"""``deepseek-rag eval``: index a BEIR corpus (or open an index built from it) and score its document ranking."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
from click.core import ParameterSource

from .common import (
    echo_json,
    encoder_options,
    index_options,
    make_encoder,
    make_settings,
    retrieval_kwargs,
    retrieval_options,
    show_progress,
)


@click.command("eval")
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
                 index_spec, recall_target, chunking, chunk_tokens, chunk_overlap, headers, model, adapter, dtype,
                 device) -> None:
    """Index a BEIR corpus and score document ranking (nDCG@10, Recall@10/100, MRR@10, latency).

    \b
    Example:
      deepseek-rag eval --data datasets/scifact --chunking none --index-spec Flat --json
      deepseek-rag eval --data datasets/scifact --index sci.idx --mode sparse
      deepseek-rag eval --data datasets/scifact --index sci.idx --mode dense --index-spec 'IVF128,PQ192x4fs,Refine(SQ8)'
    """
    from ..document_index import DocumentIndex
    from ..evaluation import evaluate_retriever, load_beir_split
    from ..ingest.loaders import load_beir_corpus
    from ..storage.layout import check_save_target

    split_data = load_beir_split(data, split)
    settings = make_settings(index_spec, chunking, chunk_tokens, chunk_overlap, headers, recall_target)
    if keep_index:
        check_save_target(Path(keep_index), overwrite=True)
    encode_seconds = None
    if existing_index:
        # --adapter on a saved index: a query-side adapter searches the base model's vectors as they are; one that
        # changes the document side fails the fingerprint check, naming the index to rebuild
        overrides = {"dtype": dtype, "device": device, **({"adapter": adapter} if adapter else {})}
        index = DocumentIndex.load(existing_index, encoder_overrides=overrides, writable=False)
        encoder = index.encoder
        if ctx.get_parameter_source("index_spec") is not ParameterSource.DEFAULT or recall_target is not None:
            # the stored vectors re-indexed under --index-spec (in memory, then saved to a temporary folder)
            spec = index_spec if ctx.get_parameter_source("index_spec") is not ParameterSource.DEFAULT else index.info()["index_spec"]
            index = index.with_vector_spec(spec, vector_search=settings.vector_search)
    else:
        encoder = make_encoder(model, adapter, dtype, device)
        started = time.perf_counter()
        index = DocumentIndex.build(load_beir_corpus(data), encoder, settings, progress=show_progress(ctx))
        encode_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        saved = index.path if index.path is not None else index.save(keep_index or Path(tmp) / "index", overwrite=bool(keep_index))
        index = DocumentIndex.load(saved, encoder, writable=False)
        loaded = index.info()
        index_bytes, ram_bytes = loaded["index_bytes"], loaded["vector_ram_bytes"]
        retriever = index.as_retriever(aggregation=aggregation, **retrieval_kwargs(mode, fusion, sparse_weight))
        metrics = evaluate_retriever(retriever, split_data)
        info = index.info()
        index.close()
    result = {
        **{k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()},
        "documents": info["documents"], "chunks": info["chunks"], "index_spec": info["index_spec"],
        "index_bytes": index_bytes, "bytes_per_chunk": round(index_bytes / max(1, info["chunks"]), 1),
        "vector_ram_bytes": ram_bytes, "ram_bytes_per_chunk": round(ram_bytes / max(1, info["chunks"]), 1),
        "vector_search": info["vector_search"],
        "encode_seconds": round(encode_seconds, 2) if encode_seconds else None,
        "chunks_per_second": round(info["chunks"] / encode_seconds, 1) if encode_seconds else None,
        "chunking": index.settings.chunking.mode, "aggregation": aggregation, "dtype": str(encoder.dtype).replace("torch.", ""),
        "mode": retriever.mode, "fusion": retriever.fusion if retriever.mode == "hybrid" else None,
        "sparse_weight": retriever.sparse_weight if retriever.mode == "hybrid" else None,
        "sparse_bytes": info["sparse_bytes"], "split": split, "data": Path(data).name,
    }
    if as_json:
        echo_json(result)
        return
    for key, value in result.items():
        click.echo(f"{key:>18}: {value}")
