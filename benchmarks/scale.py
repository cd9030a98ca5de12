"""How index cost grows from 10k to 1M chunks: Flat vs the quantized IVF specs ``auto`` may pick.

    python benchmarks/scale.py --like bench-out/scifact-index --sizes 10000,100000,1000000 --json bench-out/scale.json

Vectors are synthetic (say so when quoting). With ``--like INDEX_DIR`` (a deepseek-rag index folder with a
Flat index, e.g. ``deepseek-rag index ../shared/datasets/scifact/corpus.jsonl --out bench-out/scifact-index
--index-spec Flat``) they are drawn from a 64-component Gaussian mixture with one shared covariance, fitted
to that index's real chunk vectors, so they keep the real embeddings' spectrum (their low intrinsic
dimension) and cluster structure; queries are fresh draws from the same mixture. Without it: unit vectors
around 2,000 random centres with isotropic noise, a much harder (pessimistic) case for any quantizer.

For each size and spec it reports build and train time, bytes per chunk on disk, and — in a fresh process
that memory-maps the saved index, as a query server would — search p50/p99 (one query at a time) at the
smallest nprobe reaching Recall@10 ≥ the target against exact search, and that process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepseek_rag.vectors.faiss_store import FaissVectorStore
from deepseek_rag.vectors.specs import AUTO_IVF_THRESHOLD, resolve_auto_spec, suggest_nlist

DIM = 384


def isotropic(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = means[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def real_vectors(index_dir: str) -> np.ndarray:
    """Every live vector of a deepseek-rag index folder saved with a Flat index."""
    from deepseek_rag import DocumentIndex
    from deepseek_rag.storage.rebuild import live_vectors

    index = DocumentIndex.load(index_dir, writable=False)
    if index.vectors.spec != "Flat":
        raise SystemExit(f"--like needs an index built with --index-spec Flat; {index_dir} holds {index.vectors.spec}")
    return live_vectors(index.snapshot())[1]


class TiedGaussianMixture:
    """k-means centres plus one within-cluster covariance, fitted to real vectors; draws unit vectors."""

    def __init__(self, vectors: np.ndarray, components: int = 64, seed: int = 0) -> None:
        import faiss

        kmeans = faiss.Kmeans(vectors.shape[1], components, niter=25, seed=seed, spherical=True)
        kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
        _, labels = kmeans.index.search(vectors, 1)
        labels = labels[:, 0]
        self.means = np.stack([vectors[labels == c].mean(axis=0) for c in range(components)])
        self.weights = np.bincount(labels, minlength=components) / len(vectors)
        residuals = vectors - self.means[labels]
        self.factor = np.linalg.cholesky(np.cov(residuals, rowvar=False) + 1e-6 * np.eye(vectors.shape[1]))

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.means.shape[1]), dtype=np.float32)
        for start in range(0, n, 100_000):  # in blocks: 1M x 384 float64 noise would take 3 GB at once
            m = min(100_000, n - start)
            block = self.means[rng.choice(len(self.means), m, p=self.weights)] + rng.standard_normal((m, self.factor.shape[0])) @ self.factor.T
            out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out


def serve(index_path: str, queries_path: str, truth_path: str, target: float) -> dict:
    """Child process: memory-map the index, find the nprobe that meets the recall target, time it."""
    index = FaissVectorStore.open(index_path, mmap=True)
    queries, truth = np.load(queries_path), np.load(truth_path)
    chosen = None
    for nprobe in ([None] if index.nlist is None else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]):
        if nprobe is not None and nprobe > index.nlist:
            break
        _, ids = index.search(queries, 10, params={"nprobe": nprobe})
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))
        chosen = (nprobe, recall)
        if recall >= target:
            break
    nprobe, recall = chosen
    timings = []
    for q in queries[:300]:
        started = time.perf_counter()
        index.search(q, 10, params={"nprobe": nprobe})
        timings.append((time.perf_counter() - started) * 1000)
    return {"nprobe": nprobe, "recall@10": recall, "p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent at fork."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--target", type=float, default=0.95, help="Recall@10 vs exact to reach.")
    parser.add_argument("--like", default=None, help="Index folder (Flat) whose real vectors the synthetic ones imitate.")
    parser.add_argument("--codecs", default="auto,PQ192x4fs",
                        help="IVF codecs to compare with Flat: 'auto' (the default codec) or any faiss codec string.")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve[0], args.serve[1], args.serve[2], float(args.serve[3]))))
        return
    rows = []
    mixture = None
    if args.like:
        seed_vectors = real_vectors(args.like)
        mixture = TiedGaussianMixture(seed_vectors)
        print(f"synthetic vectors: tied Gaussian mixture fitted to {len(seed_vectors):,} real vectors of {args.like}")
    else:
        print("synthetic vectors: isotropic noise around 2,000 random centres (no --like)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            if mixture is not None:
                corpus, queries = mixture.sample(n, seed=0), mixture.sample(500, seed=1)
            else:
                corpus = isotropic(n, seed=0)
                queries = corpus[np.random.default_rng(1).choice(n, 500, replace=False)]
                queries = queries + 0.05 * np.random.default_rng(2).standard_normal(queries.shape).astype(np.float32)
                queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            exact = FaissVectorStore(DIM, "Flat")
            exact.add(np.arange(n, dtype=np.int64), corpus)
            _, truth = exact.search(queries, 10)
            np.save(f"{tmp}/q.npy", queries)
            np.save(f"{tmp}/t.npy", truth)
            # the quantized spec auto picks at this size (or would, were n above the threshold), and others
            auto_codec = resolve_auto_spec(AUTO_IVF_THRESHOLD, DIM).split(",", 1)[1]
            codecs = [auto_codec if c == "auto" else c for c in args.codecs.split(",")]
            for spec in ["Flat", *(f"IVF{suggest_nlist(n)},{codec}" for codec in codecs)]:
                index = FaissVectorStore(DIM, spec)
                started = time.perf_counter()
                index.train(corpus)
                train_s = time.perf_counter() - started
                index.add(np.arange(n, dtype=np.int64), corpus)
                build_s = time.perf_counter() - started
                path = f"{tmp}/{n}-{spec.replace(',', '_')}.faiss"
                index.save(path)
                bytes_per_chunk = Path(path).stat().st_size / n
                del index
                served = json.loads(subprocess.run(
                    [sys.executable, __file__, "--serve", path, f"{tmp}/q.npy", f"{tmp}/t.npy", str(args.target)],
                    check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                row = {"chunks": n, "spec": spec, "auto_picks": resolve_auto_spec(n, DIM) == spec or (spec == "Flat" and n < AUTO_IVF_THRESHOLD),
                       "train_s": train_s, "build_s": build_s, "bytes_per_chunk": bytes_per_chunk, **served}
                rows.append(row)
                print(f"{n:>9,} {spec:<18} train {train_s:7.1f}s build {build_s:7.1f}s {bytes_per_chunk:7.1f} B/chunk "
                      f"nprobe {served['nprobe']!s:>4} R@10 {served['recall@10']:.3f} p50 {served['p50_ms']:6.2f} ms "
                      f"p99 {served['p99_ms']:6.2f} ms RSS {served['peak_rss_mb']:6.0f} MB", flush=True)
            del corpus, exact
    print(f"\nauto switches from Flat to IVF at {AUTO_IVF_THRESHOLD:,} chunks (deepseek_rag.vectors.specs.AUTO_IVF_THRESHOLD)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
