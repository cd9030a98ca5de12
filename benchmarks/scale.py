"""How index cost grows from 10k to 1M chunks: recall vs RAM vs latency of Flat, SQ8, 4-bit PQ and two-level specs.

    python benchmarks/scale.py --like bench-out/scifact-index --sizes 10000,100000,1000000 --json bench-out/scale.json
    python benchmarks/scale.py --like bench-out/scifact-index --queries-from ../shared/datasets/scifact \
        --sizes real,1000000 --codecs "auto;SQ8;PQ192x4fs"

Vectors are synthetic (say so when quoting). With ``--like INDEX_DIR`` (a deepseek-rag index folder with a
Flat index, e.g. ``deepseek-rag index ../shared/datasets/scifact/corpus.jsonl --out bench-out/scifact-index
--index-spec Flat``) they are drawn from a 64-component Gaussian mixture with one shared covariance, fitted
to that index's real chunk vectors, so they keep the real embeddings' spectrum (their low intrinsic
dimension) and cluster structure; queries are fresh draws from the same mixture. Without it: unit vectors
around 2,000 random centres with isotropic noise, a much harder (pessimistic) case for any quantizer.

For each size and spec it reports build and train time, bytes per chunk on disk, and — in a fresh process
that memory-maps the saved index, as a query server would — search p50/p99 (one query at a time) at the
smallest nprobe reaching Recall@10 ≥ the target against exact search, and that process's peak RSS, and the
bytes the store holds in RAM (``ram_nbytes``: a two-level spec's re-ranking codes stay memory-mapped on disk).
A two-level spec (``...,Refine(SQ8)``) is searched at the re-rank depth (``k_factor``) the library's build-time
calibration chose (``vectors/calibration.py``, on held-out corpus vectors); the calibrated nprobe and the
recall real queries reach with it are reported too. Size ``real`` (with ``--like``) is the index's own
vectors; with ``--queries-from BEIR_DIR`` its queries are that corpus's real queries, encoded by the index's
encoder, else draws from the mixture.
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

from deepseek_rag.vectors.calibration import VectorSearchSettings, calibrate
from deepseek_rag.vectors.faiss_store import FaissVectorStore
from deepseek_rag.vectors.specs import AUTO_IVF_THRESHOLD, resolve_auto_spec, suggest_nlist

DIM = 384


def isotropic(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = means[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def real_vectors(index_dir: str, queries_from: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Every live vector of a deepseek-rag index folder saved with a Flat index, and (with ``queries_from``, a
    BEIR folder) that corpus's test queries encoded by the index's encoder."""
    from deepseek_rag import DocumentIndex
    from deepseek_rag.storage.rebuild import live_vectors

    index = DocumentIndex.load(index_dir, writable=False, encoder_overrides={"dtype": "float32"})
    if index.vectors.spec != "Flat":
        raise SystemExit(f"--like needs an index built with --index-spec Flat; {index_dir} holds {index.vectors.spec}")
    queries = None
    if queries_from:
        from deepseek_rag.evaluation import load_beir_split

        texts = list(load_beir_split(queries_from, "test").queries.values())
        queries = np.ascontiguousarray(index.encoder.encode_queries(texts), dtype=np.float32)
    return live_vectors(index.snapshot())[1], queries


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


def serve(index_path: str, queries_path: str, truth_path: str, target: float, calibrated: dict | None) -> dict:
    """Child process: memory-map the index, find the nprobe that meets the recall target (at the calibrated
    re-rank depth of a two-level spec), time it; and the recall of the calibrated setting itself."""
    index = FaissVectorStore.open(index_path, mmap=True)
    queries, truth = np.load(queries_path), np.load(truth_path)
    k_factor = (calibrated or {}).get("k_factor")
    depth = {} if k_factor is None else {"k_factor": k_factor}

    def recall_at(nprobe: int | None) -> float:
        _, ids = index.search(queries, 10, params={"nprobe": nprobe, **depth})
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))

    chosen = None
    for nprobe in ([None] if index.nlist is None else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]):
        if nprobe is not None and nprobe > index.nlist:
            break
        chosen = (nprobe, recall_at(nprobe))
        if chosen[1] >= target:
            break
    nprobe, recall = chosen
    timings = []
    for q in queries[:300]:
        started = time.perf_counter()
        index.search(q, 10, params={"nprobe": nprobe, **depth})
        timings.append((time.perf_counter() - started) * 1000)
    out = {"nprobe": nprobe, "k_factor": k_factor, "recall@10": recall, "p50_ms": float(np.percentile(timings, 50)),
           "p99_ms": float(np.percentile(timings, 99)), "ram_bytes_per_chunk": index.ram_nbytes() / len(index)}
    if calibrated:
        out["calibrated"] = {**calibrated, "real_query_recall@10": recall_at(calibrated["nprobe"])}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent at fork."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="','-separated corpus sizes; 'real' (with --like) is the index's own vectors.")
    parser.add_argument("--target", type=float, default=0.95, help="Recall@10 vs exact to reach.")
    parser.add_argument("--like", default=None, help="Index folder (Flat) whose real vectors the synthetic ones imitate.")
    parser.add_argument("--queries-from", default=None,
                        help="BEIR folder of the --like index's corpus: size 'real' is searched with its test queries.")
    parser.add_argument("--recall-target", type=float, default=0.98,
                        help="Build-time calibration target of two-level specs (held-out corpus vectors).")
    parser.add_argument("--codecs", default="auto;SQ8;PQ192x4fs",
                        help="';'-separated IVF codecs to compare with Flat: 'auto' (the default codec), a codec string "
                             "('PQ192x4fs,Refine(SQ8)'), or a whole spec with '{nlist}' ('OPQ96,IVF{nlist},PQ96x4fs').")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(*args.serve[:3], float(args.serve[3]), json.loads(args.serve[4]))))
        return
    rows = []
    mixture = real_queries = None
    if args.like:
        seed_vectors, real_queries = real_vectors(args.like, args.queries_from)
        mixture = TiedGaussianMixture(seed_vectors)
        print(f"synthetic vectors: tied Gaussian mixture fitted to {len(seed_vectors):,} real vectors of {args.like}")
    else:
        print("synthetic vectors: isotropic noise around 2,000 random centres (no --like)")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            if size.strip() == "real":
                if mixture is None:
                    raise SystemExit("size 'real' needs --like INDEX_DIR")
                corpus, n = seed_vectors, len(seed_vectors)
                queries = real_queries if real_queries is not None else mixture.sample(500, seed=1)
            elif mixture is not None:
                n = int(size)
                corpus, queries = mixture.sample(n, seed=0), mixture.sample(500, seed=1)
            else:
                n = int(size)
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
            codecs = [auto_codec if c == "auto" else c for c in args.codecs.split(";") if c.strip()]
            nlist = suggest_nlist(n)
            specs = [c.format(nlist=nlist) if "{nlist}" in c else f"IVF{nlist},{c}" for c in codecs]
            for spec in ["Flat", *specs]:
                index = FaissVectorStore(DIM, spec)
                ids = np.arange(n, dtype=np.int64)
                started = time.perf_counter()
                index.train(corpus)
                train_s = time.perf_counter() - started
                index.add(ids, corpus)
                build_s = time.perf_counter() - started
                calibrated = None
                if index.refined:  # what the library does at build time: knobs for a recall target
                    calibrated = calibrate([index], ids, corpus, VectorSearchSettings(recall_target=args.recall_target))
                    calibrated["seconds"] = round(time.perf_counter() - started - build_s, 1)
                path = f"{tmp}/{n}-{spec.replace(',', '_')}.faiss"
                index.save(path)
                bytes_per_chunk = index.nbytes() / n
                del index
                served = json.loads(subprocess.run(
                    [sys.executable, __file__, "--serve", path, f"{tmp}/q.npy", f"{tmp}/t.npy", str(args.target),
                     json.dumps(calibrated)], check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                row = {"chunks": n, "spec": spec, "auto_picks": resolve_auto_spec(n, DIM) == spec or (spec == "Flat" and n < AUTO_IVF_THRESHOLD),
                       "train_s": train_s, "build_s": build_s, "bytes_per_chunk": bytes_per_chunk, **served}
                rows.append(row)
                depth = "" if served["k_factor"] is None else f" x{served['k_factor']}"
                print(f"{n:>9,} {spec:<30} train {train_s:7.1f}s build {build_s:7.1f}s disk {bytes_per_chunk:7.1f} "
                      f"RAM {served['ram_bytes_per_chunk']:7.1f} B/chunk nprobe {served['nprobe']!s:>4}{depth} "
                      f"R@10 {served['recall@10']:.3f} p50 {served['p50_ms']:6.2f} ms p99 {served['p99_ms']:6.2f} ms "
                      f"RSS {served['peak_rss_mb']:6.0f} MB", flush=True)
                if calibrated:
                    c = served["calibrated"]
                    print(f"{'':>9} {'':<30} calibrated in {c['seconds']}s: nprobe {c['nprobe']} x{c['k_factor']} "
                          f"(held-out R@10 {c['recall@10']:.3f}, real queries {c['real_query_recall@10']:.3f})", flush=True)
            del corpus, exact
    print(f"\nauto switches from Flat to IVF at {AUTO_IVF_THRESHOLD:,} chunks (deepseek_rag.vectors.specs.AUTO_IVF_THRESHOLD)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
