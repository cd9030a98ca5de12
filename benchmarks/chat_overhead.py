"""Added latency of ``POST /v1/chat/completions`` over ``POST /v1/ask``, both answering extractively, one server.

    python benchmarks/chat_overhead.py bench-out/scifact-default-fp32 --queries ../shared/datasets/scifact/queries.jsonl

Starts ``deepseek-rag serve`` on a copy of the index with the LLM variables removed from its environment (so both
routes give the offline extractive answer), or measures a running server given with ``--url``. One client sends
each query to both routes in turn — which route goes first alternates — after ``--warmup`` pairs, for
``--requests`` pairs; chat requests carry a one-message conversation, so the difference is the chat layer
(message parsing and history trimming, citation renumbering, usage counting, the OpenAI shape), not more
retrieval. Prints p50 and p90 per route and the p50 of the per-query difference, in one run; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, stop, wait_ready  # noqa: E402  (the same server helpers)

LLM_VARIABLES = ("DEEPSEEK_API_KEY", "DEEPSEEK_RAG_LLM_BASE_URL", "DEEPSEEK_RAG_LLM_MODEL", "DEEPSEEK_RAG_LLM_API_KEY")
DEFAULT_QUERIES = ("who repairs the roof?", "how long is the information confidential?", "which law governs it?")


def start_server(index: Path) -> tuple[subprocess.Popen, str]:
    """``deepseek-rag serve`` on ``index`` with no LLM configured; returns the process and its URL once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in LLM_VARIABLES}
    proc = subprocess.Popen([sys.executable, "-m", "deepseek_rag.cli", "serve", str(index), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, 180)
    except SystemExit:
        proc.kill()
        raise
    return proc, url


def timed_post(client: httpx.Client, path: str, body: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}: {response.text[:500]}")
    return seconds, response.json()


def measure(url: str, queries: list[str], requests: int, warmup: int, top_k: int, key: str | None) -> dict:
    """Per-route latencies (seconds) of ``requests`` pairs after ``warmup`` pairs, sequential on one connection."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    ask_s, chat_s = [], []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for i in range(warmup + requests):
            query = queries[i % len(queries)]
            calls = [("ask", "/v1/ask", {"question": query, "top_k": top_k}),
                     ("chat", "/v1/chat/completions", {"model": "default", "top_k": top_k,
                                                       "messages": [{"role": "user", "content": query}]})]
            for name, path, body in calls if i % 2 == 0 else calls[::-1]:
                seconds, answer = timed_post(client, path, body)
                mode = answer.get("mode")
                if mode != "extractive":
                    raise SystemExit(f"{path} answered with mode={mode!r}; this measures the extractive answer "
                                     "(unset the LLM variables of the server)")
                if i >= warmup:
                    (ask_s if name == "ask" else chat_s).append(seconds)
    ask, chat = np.array(ask_s) * 1000, np.array(chat_s) * 1000
    return {
        "requests": requests, "warmup": warmup, "top_k": top_k,
        "ask_p50_ms": float(np.percentile(ask, 50)), "ask_p90_ms": float(np.percentile(ask, 90)),
        "chat_p50_ms": float(np.percentile(chat, 50)), "chat_p90_ms": float(np.percentile(chat, 90)),
        "added_p50_ms": float(np.percentile(chat - ask, 50)),
        "added_of_p50s_ms": float(np.percentile(chat, 50) - np.percentile(ask, 50)),
    }


def read_queries(path: str | None) -> list[str]:
    if path is None:
        return list(DEFAULT_QUERIES)
    with open(path, encoding="utf-8") as handle:  # BEIR queries.jsonl: {"_id": ..., "text": ...} per line
        return [json.loads(line)["text"] for line in handle if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", nargs="?", help="Index directory to serve (a copy is served); not with --url.")
    parser.add_argument("--url", help="Measure this running server instead (it must have no LLM configured).")
    parser.add_argument("--key", help="Read key of the server given with --url.")
    parser.add_argument("--queries", help="BEIR queries.jsonl (default: three built-in questions).")
    parser.add_argument("--requests", type=int, default=300, help="Pairs of requests measured.")
    parser.add_argument("--warmup", type=int, default=10, help="Pairs sent first and not counted.")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--json", help="Write the figures here.")
    args = parser.parse_args()
    if (args.index is None) == (args.url is None):
        parser.error("give an index directory or --url, not both")
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1 and --warmup at least 0")
    queries = read_queries(args.queries)
    if args.url:
        result = measure(args.url, queries, args.requests, args.warmup, args.top_k, args.key)
    else:
        work = Path(tempfile.mkdtemp(prefix="chat-overhead-"))
        try:
            shutil.copytree(args.index, work / "index")
            proc, url = start_server(work / "index")
            try:
                result = measure(url, queries, args.requests, args.warmup, args.top_k, None)
            finally:
                stop(proc)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'route':<28}{'p50 ms':>9}{'p90 ms':>9}")
    print(f"{'POST /v1/ask':<28}{result['ask_p50_ms']:>9.2f}{result['ask_p90_ms']:>9.2f}")
    print(f"{'POST /v1/chat/completions':<28}{result['chat_p50_ms']:>9.2f}{result['chat_p90_ms']:>9.2f}")
    print(f"added latency: p50 of per-query differences {result['added_p50_ms']:+.2f} ms, "
          f"difference of p50s {result['added_of_p50s_ms']:+.2f} ms ({result['requests']} pairs, extractive)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
