"""Parallel readers and one writer: search throughput at 1, 2 and 8 threads, and query latency while a writer
process upserts and publishes, side by side in one run.

    python benchmarks/concurrency.py ../shared/datasets/scifact --index bench-out/scifact-default-fp32

Part 1 — throughput. The test queries are encoded once; then threads search the same index as fast as they can
for ``--seconds`` each (dense: vector search + chunk fetch; hybrid: the same plus BM25 and fusion, the
default mode). The first release took one lock for every search, so it could not pass 1x.

Part 2 — a writer. A separate process (one torch thread, so each process has a core of this 2-core machine)
upserts ``--writer-docs`` corpus documents in batches of 100, publishing a version after each. Meanwhile this
process answers queries through an ``IndexHandle`` that follows every new version (watcher, 0.2 s). The
writer is pinned to the last core and the reader to the others, so the comparison shows what the writer's
publishing does to readers (locks, swaps, opening segments), not two CPU-bound processes sharing a core. The same
query loop runs before and after the writer (idle) and during it; the latencies are compared as a ratio.
Queries are pre-encoded here too (``--encode`` adds the query encoding to each timed query). A control run
does the writer's chunking and encoding without writing anything, so what publishing adds can be told apart
from what sharing the machine with an encoder costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, IndexHandle
from deepseek_rag.evaluation import load_beir_split
from deepseek_rag.storage.merging import VersionSettings

WRITER = textwrap.dedent("""
    import os, sys, time
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
        os.sched_setaffinity(0, {os.cpu_count() - 1})  # the writer gets the last core, the readers the rest
    import torch
    torch.set_num_threads(1)
    from deepseek_rag import Document, DocumentIndex, load_beir_corpus
    path, corpus, count, publish = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "publish"
    docs = load_beir_corpus(corpus)[:count]
    index = DocumentIndex.load(path, lock_timeout=60)
    index.settings.versions.merge_factor = int(sys.argv[5])  # the index may have been built with another
    print("ready", flush=True)
    started = time.perf_counter()
    for start in range(0, len(docs), 100):
        batch = [Document(d.id, d.text + " (revised)", d.metadata) for d in docs[start:start + 100]]
        if not publish:  # the control: the same chunking and encoding, nothing written
            prepared = index._prepare(batch, None)
            print(f"encoded {prepared[0].chunk_count} chunks", flush=True)
            continue
        index.upsert_documents(batch)
        t = time.perf_counter()
        index.save()
        print(f"published version {index.snapshot().version} in {time.perf_counter() - t:.2f}s", flush=True)
    print(f"done {time.perf_counter() - started:.1f}", flush=True)
""")


def throughput(index: DocumentIndex, vectors: np.ndarray, texts: list[str], threads: int, seconds: float, mode: str) -> float:
    retriever = index.as_retriever(top_k=10)
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def run(slot: int) -> None:
        i = slot
        while time.perf_counter() < stop:
            q = i % len(vectors)
            if mode == "dense":
                retriever.search_by_vectors(vectors[q : q + 1], 10)
            else:
                retriever.search_by_vectors(vectors[q : q + 1], 10, queries=[texts[q]], mode="hybrid")
            counts[slot] += 1
            i += threads

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def timed_queries(retriever, vectors: np.ndarray, texts: list[str], until, encode: bool) -> list[float]:
    out, i = [], 0
    while until():
        q = i % len(vectors)
        started = time.perf_counter()
        if encode:
            retriever.retrieve(texts[q])
        else:
            retriever.search_by_vectors(vectors[q : q + 1], 10, queries=[texts[q]], mode="hybrid")
        out.append((time.perf_counter() - started) * 1000)
        i += 1
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    return {"queries": len(values), "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (SciFact)")
    parser.add_argument("--index", required=True, help="An index of that corpus (deepseek-rag eval --keep-index DIR)")
    parser.add_argument("--seconds", type=float, default=8.0, help="Seconds per throughput measurement.")
    parser.add_argument("--writer-docs", type=int, default=1000, help="Documents the writer process upserts.")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="Idle query loop before and after the writer.")
    parser.add_argument("--encode", action="store_true", help="Time query encoding too in part 2.")
    parser.add_argument("--skip-writer", action="store_true", help="Part 1 only.")
    parser.add_argument("--merge-factor", type=int, default=VersionSettings().merge_factor,
                        help="The writer's merge factor (default: the library's).")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for this process (Python's default is 0.005 s).")
    parser.add_argument("--json", default=None, help="Write the figures here.")
    args = parser.parse_args()

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    split = load_beir_split(args.data, "test")
    texts = list(split.queries.values())
    work = Path(tempfile.mkdtemp(prefix="concurrency-"))
    shutil.copytree(args.index, work / "index")  # the writer changes it: work on a copy
    index = DocumentIndex.load(work / "index", writable=False)
    vectors = index.encoder.encode_queries(texts)
    results: dict = {"chunks": index.store.counts()[1], "queries": len(texts), "throughput": {},
                     "switch_interval": sys.getswitchinterval()}

    print(f"Part 1: search throughput, {results['chunks']:,} chunks, queries pre-encoded, {args.seconds:g}s each, "
          f"switch interval {sys.getswitchinterval() * 1000:g} ms")
    print(f"{'mode':<8}{'threads':>8}{'QPS':>10}{'vs 1':>8}")
    for mode in ("dense", "hybrid"):
        throughput(index, vectors, texts, 2, 1.0, mode)  # warm up
        base = None
        for threads in (1, 2, 8):
            qps = throughput(index, vectors, texts, threads, args.seconds, mode)
            base = base or qps
            results["throughput"][f"{mode}-{threads}"] = round(qps, 1)
            print(f"{mode:<8}{threads:>8}{qps:>10.1f}{qps / base:>7.2f}x", flush=True)

    if args.skip_writer:
        return
    import os

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(os.cpu_count() - 1)))
    print(f"\nPart 2: hybrid query latency while a writer process upserts {args.writer_docs} documents")
    handle = IndexHandle(work / "index", index.encoder, watch=0.2)
    retriever = handle.as_retriever(top_k=10)
    warm_up = iter(range(50))
    timed_queries(retriever, vectors, texts, lambda: next(warm_up, None) is not None, args.encode)
    end = time.perf_counter() + args.idle_seconds
    idle = timed_queries(retriever, vectors, texts, lambda: time.perf_counter() < end, args.encode)
    def with_process(publish: bool) -> tuple[list[float], list[str]]:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(work / "index"), args.data, str(args.writer_docs),
                                 "publish" if publish else "encode", str(args.merge_factor)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        timings = timed_queries(retriever, vectors, texts, lambda: proc.poll() is None, args.encode)
        reader.join(timeout=10)
        return timings, lines

    control, _ = with_process(publish=False)
    version_before = handle.version
    busy, lines = with_process(publish=True)
    time.sleep(0.5)
    end = time.perf_counter() + args.idle_seconds
    idle += timed_queries(retriever, vectors, texts, lambda: time.perf_counter() < end, args.encode)
    results["writer"] = {"idle": percentiles(idle), "encoding_only": percentiles(control), "during_writer": percentiles(busy),
                         "versions_seen": f"{version_before} -> {handle.version}", "writer_log": [s.strip() for s in lines]}
    ratio = results["writer"]["during_writer"]["p99_ms"] / results["writer"]["idle"]["p99_ms"]
    control_ratio = results["writer"]["during_writer"]["p99_ms"] / results["writer"]["encoding_only"]["p99_ms"]
    results["writer"]["p99_ratio_vs_idle"] = round(ratio, 3)
    results["writer"]["p99_ratio_vs_encoding_only"] = round(control_ratio, 3)
    for line in lines:
        print("  writer: " + line.strip())
    print(f"{'':<34}{'queries':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for label, key in (("idle", "idle"), ("same encoding, nothing published", "encoding_only"),
                       ("writer upserting and publishing", "during_writer")):
        row = results["writer"][key]
        print(f"{label:<34}{row['queries']:>8}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}")
    print(f"p99 with the writer / idle: {ratio:.2f}x; / the same encoding without publishing: {control_ratio:.2f}x; "
          f"the handle moved from version {version_before} to {handle.version}")
    handle.close()
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
