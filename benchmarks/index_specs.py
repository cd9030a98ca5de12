"""Compare FAISS factory strings on one corpus: size on disk, build time, Recall@k against exact search, latency.

Each spec is built with :class:`deepseek_rag.vectors.faiss_store.FaissVectorStore` exactly as the library builds it, saved
to measure its file, and searched with every ``--nprobe`` (IVF specs only). Recall is measured against
exact ``Flat`` search on the same vectors; latency is a single-query loop, as an interactive retriever
would search. The numbers feed ``AUTO_IVF_THRESHOLD`` and ``AUTO_IVF_CODEC`` in ``deepseek_rag/index.py``.

Examples::

    python benchmarks/index_specs.py --corpus-vectors chunks.npy --query-vectors queries.npy
    python benchmarks/index_specs.py --synthetic 100000 --dim 384 --specs "Flat;IVF1024,PQ96x8" --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepseek_rag.errors import DeepSeekRAGError  # noqa: E402
from deepseek_rag.vectors.faiss_store import FaissVectorStore as VectorIndex  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class Row:
    spec: str
    nprobe: int | None
    rescore_factor: int
    bytes_per_vector: float
    ratio_vs_flat: float
    build_s: float
    recall: float
    p50_ms: float
    p99_ms: float


def synthetic_vectors(n: int, n_queries: int, dim: int, seed: int, clusters: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors from a seeded mixture of Gaussians; queries come from the same mixture, not the corpus."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        noise = rng.standard_normal((count, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        x = centers[rng.integers(0, clusters, count)] + noise
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return draw(n), draw(n_queries)


def load_unit_vectors(path: str) -> np.ndarray:
    x = np.ascontiguousarray(np.load(path), dtype=np.float32)
    if x.ndim != 2:
        raise SystemExit(f"{path}: expected a 2-D array of vectors, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        logger.warning("%s: vectors are not unit length (norms %.3f..%.3f); normalising", path, norms.min(), norms.max())
        x /= np.maximum(norms, 1e-12)[:, None]
    return x


def latency_ms(index: VectorIndex, queries: np.ndarray, k: int, **kwargs: object) -> tuple[float, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, k, **kwargs)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth)]))


def run(args: argparse.Namespace) -> dict:
    if args.synthetic:
        corpus, queries = synthetic_vectors(args.synthetic, args.queries, args.dim, args.seed, args.clusters, args.spread)
        source = f"synthetic N={args.synthetic} dim={args.dim} clusters={args.clusters} spread={args.spread} seed={args.seed}"
    elif args.corpus_vectors and args.query_vectors:
        corpus, queries = load_unit_vectors(args.corpus_vectors), load_unit_vectors(args.query_vectors)
        source = f"{args.corpus_vectors} + {args.query_vectors}"
    else:
        raise SystemExit("pass --corpus-vectors and --query-vectors, or --synthetic N")
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    n, dim = corpus.shape
    ids = np.arange(n, dtype=np.int64)
    specs = [s.strip() for s in args.specs.split(";") if s.strip()]
    nprobes = [int(p) for p in args.nprobe.split(",") if p.strip()]
    latency_queries = queries[: args.latency_queries]
    logger.info("%s: %d vectors, %d queries, dim %d", source, n, len(queries), dim)

    exact = VectorIndex(dim, "Flat", use_gpu=False)
    start = time.perf_counter()
    exact.add(ids, corpus)
    flat_build = time.perf_counter() - start
    truth = exact.search(queries, args.k)[1]
    flat_bpv = exact.nbytes() / n

    rows: list[Row] = []
    for spec in specs:
        if spec == "Flat":
            index, build_s = exact, flat_build
        else:
            index = VectorIndex(dim, spec, use_gpu=False)
            start = time.perf_counter()
            index.add(ids, corpus)
            build_s = time.perf_counter() - start
        bpv = index.nbytes() / n
        for nprobe in nprobes if index.nlist else [None]:
            for factor in [1] if spec == "Flat" else sorted({1, args.rescore_factor} - {0}):
                kwargs: dict = {"params": {"nprobe": nprobe}}
                if factor > 1:
                    kwargs.update(rescore_vectors=lambda wanted: corpus[wanted], rescore_factor=factor)
                found = index.search(queries, args.k, **kwargs)[1]
                p50, p99 = latency_ms(index, latency_queries, args.k, **kwargs)
                row = Row(spec, nprobe, factor, round(bpv, 1), round(bpv / flat_bpv, 4), round(build_s, 2),
                          round(recall_at_k(found, truth), 4), round(p50, 3), round(p99, 3))
                rows.append(row)
                logger.info("%s", row)
    return {"source": source, "n": n, "dim": dim, "queries": len(queries), "k": args.k,
            "threads": faiss.omp_get_max_threads(), "rows": [asdict(r) for r in rows]}


def print_table(result: dict) -> None:
    print(f"# {result['source']} | {result['queries']} queries | k={result['k']} | faiss threads={result['threads']}")
    header = ("spec", "nprobe", "rescore", "B/vec", "vs Flat", "build s", f"R@{result['k']}", "p50 ms", "p99 ms")
    print("{:<22} {:>6} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8}".format(*header))
    for r in result["rows"]:
        print("{:<22} {:>6} {:>7} {:>8.1f} {:>8.4f} {:>8.2f} {:>7.4f} {:>8.3f} {:>8.3f}".format(
            r["spec"], "-" if r["nprobe"] is None else r["nprobe"], f"x{r['rescore_factor']}" if r["rescore_factor"] > 1 else "-",
            r["bytes_per_vector"], r["ratio_vs_flat"], r["build_s"], r["recall"], r["p50_ms"], r["p99_ms"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-vectors", help=".npy of corpus chunk embeddings, shape (n, dim), unit length")
    parser.add_argument("--query-vectors", help=".npy of query embeddings, shape (q, dim), unit length")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="generate N clustered unit vectors instead")
    parser.add_argument("--dim", type=int, default=384, help="synthetic dimension (default 384)")
    parser.add_argument("--queries", type=int, default=1000, help="synthetic query count (default 1000)")
    parser.add_argument("--clusters", type=int, default=200, help="synthetic mixture components (default 200)")
    parser.add_argument("--spread", type=float, default=1.0, help="synthetic noise norm relative to a centre (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--specs", default="Flat;IVF256,SQ8;IVF256,PQ96x8;IVF256,PQ48x8", help="';'-separated factory strings")
    parser.add_argument("--nprobe", default="8,16,32", help="','-separated nprobe values for IVF specs")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rescore-factor", type=int, default=0, help="also measure exact re-scoring of k*F candidates")
    parser.add_argument("--latency-queries", type=int, default=300, help="queries timed one at a time (default 300)")
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (default: faiss's choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        result = run(args)
    except DeepSeekRAGError as exc:  # a bad spec or bad vectors: a message, not a traceback
        raise SystemExit(f"error: {exc}") from exc
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
