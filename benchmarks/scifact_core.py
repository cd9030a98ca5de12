"""SciFact through the core: chunked default vs quantized specs (recall-vs-memory), fp32 vs bf16.

    python benchmarks/scifact_core.py ../shared/datasets/scifact --out bench-out/scifact

Builds the default chunked index once with an exact ``Flat`` index (kept in ``--out`` and reused), then
re-indexes the same chunk vectors with each ``--specs`` entry and scores document nDCG@10 with the same
query vectors, so every row differs only in the vector index. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder
from deepseek_rag.evaluation import evaluate_retriever, load_beir_split, score_run
from deepseek_rag.ingest.loaders import load_beir_corpus
from deepseek_rag.storage.rebuild import live_vectors

DEFAULT_SPECS = "IVF128,Flat;IVF128,SQ8;IVF128,SQ4;IVF128,PQ96x8;IVF128,PQ48x8;IVF128,PQ192x4fs"


def ndcg_with(retriever, split, query_vectors: np.ndarray) -> dict[str, float]:
    qids = list(split.queries)
    docs = retriever.documents_by_vectors(query_vectors, 100)
    run = {q: {d.doc_id: d.score for d in hits} for q, hits in zip(qids, docs)}
    return score_run(run, split.qrels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR SciFact folder")
    parser.add_argument("--out", default="bench-out/scifact", help="Where the Flat index and results are kept.")
    parser.add_argument("--index", default=None, help="Reuse this Flat index directory (built from the same corpus).")
    parser.add_argument("--specs", default=DEFAULT_SPECS, help="';'-separated FAISS factory strings.")
    parser.add_argument("--nprobe", default="8,16,32", help="IVF nprobe values to try.")
    parser.add_argument("--skip-precision", action="store_true", help="Skip the fp32 vs bf16 comparison.")
    parser.add_argument("--bf16-sample", type=int, default=64, help="Chunks encoded in fp32 and bf16 for throughput.")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_beir_split(args.data, "test")
    encoder = DualEncoder(dtype="float32")
    index_dir = Path(args.index) if args.index else out / "flat-index"
    results: dict = {"machine": f"{__import__('os').cpu_count()} CPU cores", "specs": []}

    build_json = index_dir.parent / (index_dir.name + ".build.json")
    if not (index_dir / "CURRENT").exists():
        documents = load_beir_corpus(args.data)
        started = time.perf_counter()
        built = DocumentIndex.build(documents, encoder, index_spec="Flat", progress=True)
        seconds = time.perf_counter() - started
        built.save(index_dir, overwrite=True)
        chunks = built.info()["chunks"]
        build_json.write_text(json.dumps({"seconds": seconds, "chunks": chunks, "documents": len(documents)}))
    build = json.loads(build_json.read_text())
    results["build"] = {**build, "chunks_per_second": build["chunks"] / build["seconds"],
                        "documents_per_second": build["documents"] / build["seconds"]}

    index = DocumentIndex.load(index_dir, encoder, writable=False)
    retriever = index.as_retriever()
    flat = evaluate_retriever(retriever, split)
    results["flat"] = flat
    query_vectors = encoder.encode_queries(list(split.queries.values()))
    ids, _ = live_vectors(index.snapshot())
    flat_bytes = index.vectors.nbytes() / len(ids)
    flat_ndcg = ndcg_with(retriever, split, query_vectors)["ndcg@10"]
    rows = [("Flat", "-", flat_bytes, 1.0, flat_ndcg, 1.0)]

    for spec in [s for s in args.specs.split(";") if s]:
        started = time.perf_counter()
        candidate = index.with_vector_spec(spec)  # same chunks and BM25 side, vectors re-indexed
        train_seconds = time.perf_counter() - started
        bytes_per_chunk = candidate.vectors.nbytes() / len(ids)
        retriever = candidate.as_retriever()
        for nprobe in [int(n) for n in args.nprobe.split(",")] if candidate.vectors.nlist else [None]:
            retriever.nprobe = nprobe
            ndcg = ndcg_with(retriever, split, query_vectors)["ndcg@10"]
            rows.append((spec, nprobe or "-", bytes_per_chunk, bytes_per_chunk / flat_bytes, ndcg, ndcg / flat_ndcg))
            results["specs"].append({"spec": spec, "nprobe": nprobe, "bytes_per_chunk": bytes_per_chunk,
                                     "ndcg@10": ndcg, "ndcg_vs_flat": ndcg / flat_ndcg, "build_seconds": train_seconds})
        retriever.nprobe = None

    # fp32 vs bf16: throughput on a sample of real chunk texts, query latency, and quality of bf16 queries.
    texts = [c.text for batch in index.store.iter_chunks(args.bf16_sample) for c in batch][: args.bf16_sample]
    precision = {}
    for dtype in () if args.skip_precision else ("float32", "bfloat16"):
        enc = encoder if dtype == "float32" else DualEncoder(dtype="bfloat16")
        enc.encode_documents(texts[:8])
        started = time.perf_counter()
        sample = enc.encode_documents(texts)
        rate = len(texts) / (time.perf_counter() - started)
        index.encoder = enc
        timed = evaluate_retriever(index.as_retriever(), split, latency_queries=100)
        precision[dtype] = {"chunks_per_second": rate, "query_ms_p50": timed["query_ms_p50"],
                            "query_ms_p99": timed["query_ms_p99"], "ndcg@10 (queries in this dtype)": timed["ndcg@10"],
                            "sample": sample}
    cosine = float((precision["float32"].pop("sample") * precision["bfloat16"].pop("sample")).sum(axis=1).min()) if precision else None
    results["precision"] = {**precision, "min_cosine_bf16_vs_fp32": cosine}

    print(f"\nSciFact test, {len(split.queries)} queries, {len(ids)} chunks "
          f"(built at {results['build']['chunks_per_second']:.1f} chunks/s, "
          f"{results['build']['documents_per_second']:.1f} docs/s fp32)")
    print(f"Flat chunked: ndcg@10 {flat['ndcg@10']:.4f}  recall@100 {flat['recall@100']:.4f}  "
          f"p50 {flat['query_ms_p50']:.1f} ms  p99 {flat['query_ms_p99']:.1f} ms")
    print(f"\n{'spec':<22}{'nprobe':>7}{'B/chunk':>10}{'vs Flat':>9}{'nDCG@10':>9}{'kept':>8}")
    for spec, nprobe, size, ratio, ndcg, kept in rows:
        print(f"{spec:<22}{nprobe!s:>7}{size:>10.1f}{ratio:>9.3f}{ndcg:>9.4f}{kept:>8.3f}")
    print(f"\n{'dtype':<10}{'chunks/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'nDCG@10':>9}")
    for dtype, row in precision.items():
        print(f"{dtype:<10}{row['chunks_per_second']:>10.1f}{row['query_ms_p50']:>9.1f}{row['query_ms_p99']:>9.1f}"
              f"{row['ndcg@10 (queries in this dtype)']:>9.4f}")
    if cosine is not None:
        print(f"min cosine bf16 vs fp32 over {len(texts)} chunks: {cosine:.5f}")
    (out / ("specs.json" if args.skip_precision else "results.json")).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
