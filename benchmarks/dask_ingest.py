"""Dask ingestion next to a single process on the same SciFact documents: chunks, vector agreement, wall times.

    python benchmarks/dask_ingest.py ../shared/datasets/scifact --documents 2000 --workers 2

Builds the default (chunked, hybrid) index of the first ``--documents`` documents twice in one run: once in this
process (``DocumentIndex.build``, torch on every core) and once with ``--dask local:N`` as the CLI does it
(``prepare_on_dask`` on a fresh ``LocalCluster`` of N single-threaded worker processes, each with
cores/N torch threads, then ``add_prepared`` here — the driver is the single writer). The Dask wall time includes
starting the cluster and each worker loading the encoder. Then checks that both hold the same chunks (ids, offsets,
text) and the same vectors (minimum cosine over all chunks), and prints the times side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepseek_rag import DocumentIndex, DualEncoder  # noqa: E402
from deepseek_rag.ingest.distributed import prepare_on_dask  # noqa: E402
from deepseek_rag.ingest.loaders import load_beir_corpus  # noqa: E402
from deepseek_rag.settings import IndexSettings  # noqa: E402


def chunk_rows(index: DocumentIndex) -> list[tuple]:
    return [(c.id, c.doc_id, c.ordinal, c.start, c.end, c.text) for batch in index.store.iter_chunks() for c in batch]


def vectors_by_id(index: DocumentIndex) -> tuple[np.ndarray, np.ndarray]:
    store = index.snapshot().states[0].segment.vectors
    ids = np.sort(store.ids)
    return ids, store.fetch(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR corpus folder (SciFact)")
    parser.add_argument("--documents", type=int, default=2000, help="How many documents (the corpus's first ones).")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (local:N).")
    parser.add_argument("--dtype", default="float32", help="Encoder precision (both builds).")
    parser.add_argument("--model", default=None, help="Model folder (default: the bundled all-MiniLM-L6-v2).")
    parser.add_argument("--json", default=None, help="Write the results here.")
    args = parser.parse_args()
    documents = load_beir_corpus(args.data)[: args.documents]
    encoder = DualEncoder(model=args.model, dtype=args.dtype)
    settings = IndexSettings()

    started = time.perf_counter()
    single = DocumentIndex.build(documents, encoder, settings)
    single_seconds = time.perf_counter() - started

    started = time.perf_counter()
    prepared = prepare_on_dask(documents, encoder, settings, f"local:{args.workers}")
    distributed = DocumentIndex(encoder, settings)
    distributed.add_prepared(prepared.batch, prepared.vectors)
    dask_seconds = time.perf_counter() - started

    same_chunks = chunk_rows(single) == chunk_rows(distributed)
    a_ids, a = vectors_by_id(single)
    b_ids, b = vectors_by_id(distributed)
    assert np.array_equal(a_ids, b_ids), "the two builds hold different chunk ids"
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    result = {
        "documents": len(documents), "cores": os.cpu_count(), "workers": args.workers, "dtype": args.dtype,
        "partitions": prepared.partitions, "failures": prepared.failures,
        "chunks_single": single.info()["chunks"], "chunks_dask": distributed.info()["chunks"],
        "same_chunks": same_chunks, "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
        "single_seconds": single_seconds, "dask_seconds": dask_seconds,
        "dask_over_single": dask_seconds / single_seconds,
    }
    print(f"{len(documents)} documents, {os.cpu_count()} cores, {args.dtype}: "
          f"{prepared.partitions} partitions on local:{args.workers}")
    print(f"chunks: single {result['chunks_single']}, dask {result['chunks_dask']}, identical rows: {same_chunks}")
    print(f"vectors: min cosine {result['min_cosine']:.6f}, mean {result['mean_cosine']:.6f}")
    print(f"wall: single process {single_seconds:.1f}s, dask local:{args.workers} {dask_seconds:.1f}s "
          f"(×{result['dask_over_single']:.2f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
