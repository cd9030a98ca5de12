"""Hybrid retrieval: dense vs BM25 vs fused, on SciFact (English) and a Chinese medical QA set, one run.

    python benchmarks/hybrid.py --scifact ../shared/datasets/scifact --cmd ../shared/datasets/cmd_im_sample \\
        --out bench-out/hybrid

Dense indexes (bundled MiniLM, default chunking, exact ``Flat``) are built once and kept in ``--out``
(SciFact reuses ``bench-out/scifact/flat-index`` when that exists); each sparse variant re-analyses the stored
chunks (``DocumentIndex.with_sparse``), sharing the chunks and vectors. Every row of a table reuses the same chunks and query vectors: rows differ only in the sparse
analysis, the mode or the fusion. Prints the tables and writes ``hybrid.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder, SparseConfig
from deepseek_rag.evaluation import load_beir_split, score_run
from deepseek_rag.retrieval.fusion import fuse
from deepseek_rag.ingest.language import detect_language
from deepseek_rag.ingest.loaders import load_beir_corpus

DEPTH = 100  # documents ranked per query, as `deepseek-rag eval` does


def dense_index(data: str, folder: Path, encoder: DualEncoder) -> DocumentIndex:
    if not (folder / "CURRENT").exists():
        started = time.perf_counter()
        built = DocumentIndex.build(load_beir_corpus(data), encoder, index_spec="Flat", progress=True)
        built.save(folder, overwrite=True)
        print(f"built {folder} in {time.perf_counter() - started:.0f}s")
    return DocumentIndex.load(folder, encoder, writable=False)


def use_sparse(index: DocumentIndex, config: SparseConfig) -> tuple[DocumentIndex, float]:
    """``index`` with a BM25 side analysed under ``config`` from its stored chunks, and the build seconds."""
    started = time.perf_counter()
    variant = index.with_sparse(config)
    variant.search_sparse(["warm up"], 1)
    return variant, time.perf_counter() - started


def metrics(runs: list[list[tuple[str, float]]], qids: list[str], qrels) -> dict[str, float]:
    run = {q: {d: s for d, s in ranking} for q, ranking in zip(qids, runs)}
    scored = score_run(run, qrels)
    return {"ndcg@10": round(scored["ndcg@10"], 4), "recall@10": round(scored["recall@10"], 4),
            "recall@100": round(scored["recall@100"], 4)}


def side_rankings(index: DocumentIndex, texts: list[str], vectors: np.ndarray, mode: str) -> list[list[tuple[str, float]]]:
    retriever = index.as_retriever(mode="dense")
    if mode == "dense":
        docs = retriever.documents_by_vectors(vectors, DEPTH)
    else:
        docs = retriever.retrieve_documents_batch(texts, DEPTH, mode="sparse")
    return [[(d.doc_id, d.score) for d in hits] for hits in docs]


def fused(dense, sparse, method: str, weight: float, normalization: str = "minmax"):
    weights = (2 * (1 - weight), 2 * weight) if method == "rrf" else (1 - weight, weight)
    return [fuse([d, s], method, weights, normalization=normalization)[:DEPTH] for d, s in zip(dense, sparse)]


def latency(index: DocumentIndex, texts: list[str], vectors: np.ndarray, n: int) -> dict[str, dict[str, float]]:
    """Milliseconds per query for ``retrieve_documents(query, 10)`` in each mode, one query at a time, and for the
    search alone (query vector given: FAISS, + BM25 and fusion in hybrid). Everything runs back to back on each
    query, so a busy machine slows all alike; the hybrid − dense differences are taken per query."""
    modes = ("dense", "sparse", "hybrid")
    retriever = index.as_retriever()
    timings: dict[str, list[float]] = {}

    def timed(name, call):
        started = time.perf_counter()
        call()
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    for i in [0] + list(range(min(n, len(texts)))):
        for mode in modes:
            timed(mode, lambda: retriever.retrieve_documents(texts[i], 10, mode=mode))
        timed("search dense", lambda: retriever.documents_by_vectors(vectors[i : i + 1], 10))
        timed("search hybrid", lambda: retriever.documents_by_vectors(vectors[i : i + 1], 10, queries=texts[i : i + 1]))
    timings = {name: values[1:] for name, values in timings.items()}  # drop the warm-up query
    timings["hybrid_minus_dense"] = [h - d for h, d in zip(timings["hybrid"], timings["dense"])]
    timings["search_hybrid_minus_dense"] = [h - d for h, d in zip(timings["search hybrid"], timings["search dense"])]
    return {name: {"p50_ms": round(float(np.percentile(v, 50)), 2), "p99_ms": round(float(np.percentile(v, 99)), 2)}
            for name, v in timings.items()}


def evaluate(name: str, data: str, index: DocumentIndex, variants: dict[str, SparseConfig], args) -> dict:
    split = load_beir_split(data, "test")
    qids = list(split.queries)
    texts = [split.queries[q] for q in qids]
    vectors = index.encoder.encode_queries(texts)
    out: dict = {"documents": len(index), "chunks": index.store.counts()[1], "queries": len(qids), "sparse": {}}
    dense = side_rankings(index, texts, vectors, "dense")
    out["dense"] = metrics(dense, qids, split.qrels)

    sparse_by_variant = {}
    for label, config in variants.items():
        print(f"{name}: sparse side '{label}'", flush=True)
        variant, seconds = use_sparse(index, config)
        sparse_by_variant[label] = side_rankings(variant, texts, vectors, "sparse")
        out["sparse"][label] = {**metrics(sparse_by_variant[label], qids, split.qrels), "build_s": round(seconds, 1)}
    default_label = next(iter(variants))
    index, _ = use_sparse(index, variants[default_label])
    sparse = sparse_by_variant[default_label]

    # What the Retriever itself returns in hybrid mode (the numbers a user gets), then a fusion grid.
    out["hybrid"] = {}
    for method in ("rrf", "weighted"):
        retriever = index.as_retriever(mode="hybrid", fusion=method)
        docs = retriever.documents_by_vectors(vectors, DEPTH, queries=texts)
        out["hybrid"][f"{method} (retriever defaults)"] = metrics([[(d.doc_id, d.score) for d in h] for h in docs], qids, split.qrels)
    grid = {}
    for weight in args.weights:
        grid[f"rrf w={weight}"] = metrics(fused(dense, sparse, "rrf", weight), qids, split.qrels)
        grid[f"weighted minmax w={weight}"] = metrics(fused(dense, sparse, "weighted", weight), qids, split.qrels)
        grid[f"weighted zscore w={weight}"] = metrics(fused(dense, sparse, "weighted", weight, "zscore"), qids, split.qrels)
    out["fusion_grid"] = grid

    saved = index.save(Path(args.out) / f"{name}-hybrid-index", overwrite=True)
    segment = next((saved / "segments").iterdir())
    out["sizes"] = {"postings_bytes": sum(p.stat().st_size for p in (segment / "postings").iterdir()),
                    "vectors_file_bytes": (segment / "vectors.faiss").stat().st_size,
                    "chunks_sqlite_bytes": (segment / "chunks.sqlite").stat().st_size}
    started = time.perf_counter()
    DocumentIndex.load(saved, index.encoder, writable=False).search_sparse(["warm up"], 1)
    out["sizes"]["sparse_load_s"] = round(time.perf_counter() - started, 3)
    print(f"{name}: timing queries", flush=True)
    out["latency"] = latency(index, texts, vectors, args.latency_queries)
    return out


def unknown_token_share(index: DocumentIndex, texts: list[str]) -> dict[str, float]:
    """How much of Chinese text the encoder's vocabulary cannot read ([UNK] tokens)."""
    tokenizer = index.encoder.tokenizer
    unk, total, han, han_unk = 0, 0, 0, 0
    for text in texts:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        for token, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
            is_unk = token == tokenizer.unk_token_id
            total += 1
            unk += is_unk
            if "\u4e00" <= text[start:end][:1] <= "\u9fff":
                han += 1
                han_unk += is_unk
    return {"unk_share_of_tokens": round(unk / max(1, total), 3), "unk_share_of_han_tokens": round(han_unk / max(1, han), 3)}


def detection_speed(data: str, n: int = 300) -> dict[str, float]:
    docs = load_beir_corpus(data)[:n]
    detect_language(docs[0].text)  # load langdetect's profiles
    started = time.perf_counter()
    languages = [detect_language(d.text) for d in docs]
    ms = (time.perf_counter() - started) / len(docs) * 1000
    return {"ms_per_document": round(ms, 2), "languages": dict(sorted(((l or "none"), languages.count(l)) for l in set(languages)))}


def print_table(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"  {'':52} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7}")
    for label, row in rows.items():
        print(f"  {label:52} {row['ndcg@10']:8.4f} {row['recall@10']:7.4f} {row['recall@100']:7.4f}"
              + (f"   build {row['build_s']}s" if "build_s" in row else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", help="BEIR SciFact folder")
    parser.add_argument("--cmd", help="BEIR folder of the Chinese medical QA sample (cmd_im_sample)")
    parser.add_argument("--out", default="bench-out/hybrid", help="Where dense indexes and results are kept.")
    parser.add_argument("--scifact-index", default=None, help="Dense SciFact index directory to reuse.")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7],
                        help="Sparse weights tried in the fusion grid.")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--model", default=None, help="Encoder folder (default: the bundled MiniLM).")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = DualEncoder(model=args.model, dtype="float32")
    results: dict = {"machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"}

    if args.scifact:
        shared = Path("bench-out/scifact/flat-index")
        folder = Path(args.scifact_index) if args.scifact_index else (shared if (shared / "CURRENT").exists() else out / "scifact-dense")
        index = dense_index(args.scifact, folder, encoder)
        results["scifact"] = evaluate("scifact", args.scifact, index, {
            "headers (default)": SparseConfig(),
            "no headers": SparseConfig(headers=False),
            "no stemming": SparseConfig(stemming=False),
        }, args)
        results["scifact"]["index"] = str(folder)
        results["scifact"]["language_detection"] = detection_speed(args.scifact)
        index.close()
    if args.cmd:
        index = dense_index(args.cmd, out / "cmd-dense", encoder)
        results["cmd"] = evaluate("cmd", args.cmd, index, {
            "chars: unigrams+bigrams, zh stop words (default)": SparseConfig(),
            "chars, no zh stop words": SparseConfig(chinese_stopwords=False),
            "jieba search mode, zh stop words": SparseConfig(chinese="search"),
            "jieba search mode, no zh stop words": SparseConfig(chinese="search", chinese_stopwords=False),
            "jieba precise (lcut), zh stop words": SparseConfig(chinese="precise"),
            "chars, no headers": SparseConfig(headers=False),
        }, args)
        results["cmd"]["minilm_vocabulary"] = unknown_token_share(index, [d.text for d in load_beir_corpus(args.cmd)[:500]])
        results["cmd"]["language_detection"] = detection_speed(args.cmd)
        index.close()

    (out / "hybrid.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    for name in ("scifact", "cmd"):
        if name not in results:
            continue
        r = results[name]
        print_table(f"{name}: {r['documents']} documents, {r['chunks']} chunks, {r['queries']} test queries — "
                    "document ranking", {"dense (MiniLM)": r["dense"], **{f"sparse: {k}": v for k, v in r["sparse"].items()},
                                          **{f"hybrid: {k}": v for k, v in r["hybrid"].items()}})
        best = sorted(r["fusion_grid"].items(), key=lambda kv: -kv[1]["ndcg@10"])
        print_table(f"{name}: fusion grid (default sparse side), best first", dict(best))
        print(f"  sizes: {r['sizes']}")
        print("  latency, ms per query (p50 / p99), one query at a time:")
        for label, row in r["latency"].items():
            print(f"    {label:28} {row['p50_ms']:9.2f} {row['p99_ms']:9.2f}")
        print(f"  language detection: {r['language_detection']}")
        if "minilm_vocabulary" in r:
            print(f"  MiniLM on the Chinese corpus: {r['minilm_vocabulary']}")
    print(f"\n{results['machine']}; wrote {out / 'hybrid.json'}")


if __name__ == "__main__":
    main()
