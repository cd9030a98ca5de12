"""A/B under load: arm B republished three times and its weight moved 10 → 50 → 100% while clients query.

    python benchmarks/ab_swap_load.py ../shared/datasets/scifact --index bench-out/scifact-default-fp32

``deepseek-rag serve --config`` serves two copies of ``--index`` as arms ``base`` (default) and ``tuned``. Eight
concurrent clients send SciFact test queries to ``/v1/retrieve``, each request from one of ``--users`` simulated
users (``X-User-Id``), for a baseline phase with nothing changing, then a swap phase: another process republishes
the tuned arm's directory three times (an upsert of 50 documents, as a retraining pipeline would publish), and the
weights move 10 → 50 → 100% through ``PUT /v1/admin/arms`` between them. Reported: failed requests, p50/p99 of both
phases and their ratio, and for each weight the share of requests and of users the tuned arm answered. The
republishing process is pinned to the last core, the server and the clients to the others, so the ratio shows
what swapping does to requests rather than a third process competing for a core. Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import KEY, free_port, stop, wait_ready  # noqa: E402

REPUBLISH = textwrap.dedent("""
    import os, sys
    if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
        os.sched_setaffinity(0, {os.cpu_count() - 1})
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import torch
    torch.set_num_threads(1)
    from deepseek_rag import Document, DocumentIndex, load_beir_corpus
    path, corpus, round_ = sys.argv[1], sys.argv[2], int(sys.argv[3])
    docs = load_beir_corpus(corpus)[round_ * 50:(round_ + 1) * 50]
    index = DocumentIndex.load(path, lock_timeout=60)
    index.upsert_documents([Document(d.id, d.text + f" (retrained {round_})", d.metadata) for d in docs])
    index.save()
    print(index.snapshot().version, flush=True)
""")


async def clients(url: str, queries: list[str], users: int, seconds: float, concurrency: int, log: list,
                  stop: asyncio.Event | None = None) -> None:
    """Clients querying for ``seconds``, or with ``stop`` until it is set (at most 8 × ``seconds``: bounded)."""
    end = time.perf_counter() + (seconds if stop is None else 8 * seconds)
    rng = random.Random(len(log))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def worker() -> None:
            while time.perf_counter() < end and not (stop is not None and stop.is_set()):
                user = f"user-{rng.randrange(users)}"
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/retrieve", json={"query": rng.choice(queries), "top_k": 10},
                                                 headers={"X-User-Id": user})
                    ok = response.status_code == 200
                    arm = response.json().get("arm") if ok else None
                    version = response.json().get("index_version") if ok else None
                except httpx.HTTPError:
                    ok, arm, version = False, None, None
                log.append((time.perf_counter(), (time.perf_counter() - started) * 1000, ok, user, arm, version))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR SciFact folder")
    parser.add_argument("--index", required=True)
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="Length of the baseline phase; the swap phase runs through the three changes, then a quarter of it.")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = Path(args.data)
    queries = [json.loads(line)["text"] for line in open(data / "queries.jsonl", encoding="utf-8")][:300]
    work = Path(tempfile.mkdtemp(prefix="ab-swap-"))
    for arm in ("base", "tuned"):
        shutil.copytree(args.index, work / arm)
    (work / "serve.toml").write_text('salt = "bench"\n[[arms]]\nname = "base"\nindex = "base"\nweight = 90\ndefault = true\n'
                                     '[[arms]]\nname = "tuned"\nindex = "tuned"\nweight = 10\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_cores = "0" if (os.cpu_count() or 1) == 2 else f"0-{(os.cpu_count() or 2) - 2}"
    server = subprocess.Popen(["taskset", "-c", server_cores, sys.executable, "-m", "deepseek_rag.cli", "serve", "--config",
                               str(work / "serve.toml"), "--port", str(port), "--api-key", KEY, "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range((os.cpu_count() or 2) - 1)))
    results: dict = {}
    try:
        wait_ready(url, server, 300)
        baseline: list = []
        asyncio.run(clients(url, queries, args.users, args.seconds, args.concurrency, baseline))
        swaps: list = []
        events: list[tuple[float, str]] = []

        async def swap_phase() -> None:
            stop = asyncio.Event()  # the load runs through every change, then a quarter phase at 100%
            load = asyncio.create_task(clients(url, queries, args.users, args.seconds, args.concurrency, swaps, stop))
            async with httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as admin:
                for round_, weight in enumerate((10, 50, 100)):
                    await asyncio.sleep(args.seconds / 4)
                    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", REPUBLISH, str(work / "tuned"),
                                                                str(data), str(round_), stdout=asyncio.subprocess.PIPE)
                    version = (await proc.stdout.read()).decode().strip()
                    await proc.wait()
                    events.append((time.perf_counter(), f"republished tuned as version {version}"))
                    response = await admin.put("/v1/admin/arms", json={"weights": {"base": 100 - weight, "tuned": weight}})
                    response.raise_for_status()
                    events.append((time.perf_counter(), f"weights base {100 - weight} / tuned {weight}"))
                await asyncio.sleep(args.seconds / 4)
            stop.set()
            await load

        asyncio.run(swap_phase())
    finally:
        stop(server)
        shutil.rmtree(work, ignore_errors=True)

    def summary(log: list) -> dict:
        latencies = [row[1] for row in log]
        return {"requests": len(log), "failed": sum(not row[2] for row in log),
                "p50_ms": round(float(np.percentile(latencies, 50)), 1), "p99_ms": round(float(np.percentile(latencies, 99)), 1)}

    results["baseline"], results["with_swaps"] = summary(baseline), summary(swaps)
    results["p99_ratio"] = round(results["with_swaps"]["p99_ms"] / results["baseline"]["p99_ms"], 2)
    # the split: requests between one weight change and the next (baseline: 10%)
    marks = [t for t, what in events if what.startswith("weights")]  # weights 10, 50, 100 in that order
    inf = float("inf")
    phases = [("10% (baseline)", baseline),
              ("10%", [r for r in swaps if r[0] < marks[1]]),
              ("50%", [r for r in swaps if marks[1] <= r[0] < marks[2]]),
              ("100%", [r for r in swaps if marks[2] <= r[0] < inf])]
    split = []
    for label, rows in phases:
        ok = [r for r in rows if r[2]]
        tuned = [r for r in ok if r[4] == "tuned"]
        users = {r[3] for r in ok}
        tuned_users = {r[3] for r in tuned}
        split.append({"weight": label, "requests": len(ok), "tuned_request_share": round(len(tuned) / max(1, len(ok)), 4),
                      "tuned_user_share": round(len(tuned_users) / max(1, len(users)), 4),
                      "users_on_both_arms": len({r[3] for r in ok if r[4] == "base"} & tuned_users)})
    results["split"] = split
    results["events"] = [what for _, what in events]
    versions = sorted({r[5] for r in swaps if r[4] == "tuned" and r[5] is not None})
    results["tuned_versions_served"] = versions
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
