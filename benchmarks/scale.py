"""How index cost grows from 10k to 1M chunks: Flat vs the quantized IVF that ``auto`` picks.

    python benchmarks/scale.py --sizes 10000,100000,1000000 --json bench-out/scale.json

Vectors are synthetic (say so when quoting): unit vectors drawn around 2,000 random centres in 384
dimensions, the size of all-MiniLM-L6-v2; queries are perturbed corpus vectors. For each size and spec it
reports build and train time, bytes per chunk on disk, and — in a fresh process that memory-maps the
saved index, as a query server would — search p50/p99 at the smallest nprobe reaching Recall@10 ≥ the
target against exact search, and that process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deepseek_rag.index import AUTO_IVF_THRESHOLD, VectorIndex, resolve_auto_spec, suggest_nlist

DIM = 384


def synthetic(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = means[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def serve(index_path: str, queries_path: str, truth_path: str, target: float) -> dict:
    """Child process: memory-map the index, find the nprobe that meets the recall target, time it."""
    index = VectorIndex.load(index_path, mmap=True)
    queries, truth = np.load(queries_path), np.load(truth_path)
    chosen = None
    for nprobe in ([None] if index.nlist is None else [1, 2, 4, 8, 16, 32, 64, 128, 256]):
        if nprobe is not None and nprobe > index.nlist:
            break
        _, ids = index.search(queries, 10, nprobe=nprobe)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))
        chosen = (nprobe, recall)
        if recall >= target:
            break
    nprobe, recall = chosen
    timings = []
    for q in queries[:300]:
        started = time.perf_counter()
        index.search(q, 10, nprobe=nprobe)
        timings.append((time.perf_counter() - started) * 1000)
    return {"nprobe": nprobe, "recall@10": recall, "p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--target", type=float, default=0.95, help="Recall@10 vs exact to reach.")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(serve(args.serve[0], args.serve[1], args.serve[2], float(args.serve[3]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            corpus = synthetic(n, seed=0)
            queries = corpus[np.random.default_rng(1).choice(n, 500, replace=False)]
            queries = queries + 0.05 * np.random.default_rng(2).standard_normal(queries.shape).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            exact = VectorIndex(DIM, "Flat")
            exact.add(np.arange(n, dtype=np.int64), corpus)
            _, truth = exact.search(queries, 10)
            np.save(f"{tmp}/q.npy", queries)
            np.save(f"{tmp}/t.npy", truth)
            # the quantized spec auto picks at this size, or would pick were n above the threshold
            ivf_spec = f"IVF{suggest_nlist(n)},{resolve_auto_spec(AUTO_IVF_THRESHOLD, DIM).split(',', 1)[1]}"
            for spec in ("Flat", ivf_spec):
                index = VectorIndex(DIM, spec)
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
    print(f"\nauto switches from Flat to IVF at {AUTO_IVF_THRESHOLD:,} chunks (deepseek_rag.index.AUTO_IVF_THRESHOLD)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
