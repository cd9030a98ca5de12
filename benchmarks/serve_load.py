"""Load test of ``deepseek-rag serve`` beside the FastAPI app a LlamaIndex user would write, on SciFact.

    python benchmarks/serve_load.py ../shared/datasets/scifact --index bench-out/scifact-default-fp32

Both servers run as separate processes on 127.0.0.1 and get the same load: ``--concurrency`` clients (1, 8, 32)
each sending the 300 SciFact test queries round-robin to ``POST /v1/retrieve`` (top 10) for ``--seconds``, while
a writer upserts 5 corpus documents every second (ours: ``POST /v1/documents``, published as a version; the
LlamaIndex app: ``index.insert``, since its FAISS store cannot delete). Every request loop is bounded in count
and time and talks to loopback only.

* ours: ``deepseek-rag serve`` on a copy of ``--index`` (defaults: hybrid retrieval, dynamic batching 2 ms).
* llamaindex: ``VectorStoreIndex`` over ``FaissVectorStore(IndexFlatIP(384))`` with ``HuggingFaceEmbedding`` of the
  same bundled all-MiniLM-L6-v2, ``.as_retriever(similarity_top_k=10)`` awaited in an ``async def`` route
  (built once and kept in ``--cache``).

Also measured in the same run: ours at concurrency 32 with batching off (``--batch-window-ms 0``) for the gain
of dynamic batching, ours at concurrency 8 with no writer, for the p99 ratio, and with ``--also-workers N``
ours with N worker processes at the top concurrency, and with ``--also-model EXPORT`` ours encoding queries
with that encoder (an ONNX export of the index's model opens the index: same fingerprint). Prints one table; ``--json``
writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np

KEY = "load-test-key"

LLAMAINDEX_APP = textwrap.dedent('''
    """The FastAPI app a LlamaIndex user would write: VectorStoreIndex over FaissVectorStore, HuggingFaceEmbedding."""
    import json, os, sys
    import faiss
    from fastapi import FastAPI
    from pydantic import BaseModel
    from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex, load_index_from_storage
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore
    from deepseek_rag.encoding.model_folder import default_model_path

    corpus, cache = sys.argv[1], sys.argv[2]
    embed = HuggingFaceEmbedding(model_name=default_model_path(), device="cpu")
    Settings.llm = None
    if os.path.exists(os.path.join(cache, "docstore.json")):
        store = FaissVectorStore.from_persist_dir(cache)
        index = load_index_from_storage(StorageContext.from_defaults(vector_store=store, persist_dir=cache), embed_model=embed)
    else:
        docs = []
        with open(corpus, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                docs.append(Document(text=(row.get("title", "") + "\\n" + row["text"]).strip(), id_=row["_id"]))
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
        index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                                embed_model=embed)
        index.storage_context.persist(persist_dir=cache)
    retriever = index.as_retriever(similarity_top_k=10)
    app = FastAPI()

    class Query(BaseModel):
        query: str
        top_k: int = 10

    class Upsert(BaseModel):
        documents: list[dict]

    @app.post("/v1/retrieve")
    async def retrieve(q: Query):
        nodes = await retriever.aretrieve(q.query)
        return {"hits": [{"doc_id": n.node.ref_doc_id, "score": n.score, "text": n.node.get_content()} for n in nodes]}

    @app.post("/v1/documents")
    async def upsert(body: Upsert):
        for d in body.documents:
            index.insert(Document(text=d["text"], id_=d["id"]))  # FaissVectorStore cannot delete: insert only
        return {"upserted": len(body.documents)}

    @app.get("/readyz")
    async def ready():
        return {"status": "ready"}
''')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server at {url} exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {url} was not ready within {timeout:.0f}s")


def start_ours(index: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deepseek_rag.cli", "serve", str(index), "--port", str(port),
                             "--api-key", KEY, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, 180)
    return proc, url


def start_llamaindex(corpus: Path, cache: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    app_file = cache.parent / "llamaindex_app.py"
    app_file.write_text(LLAMAINDEX_APP)
    code = (f"import sys, uvicorn; sys.argv = ['app', {str(corpus)!r}, {str(cache)!r}]; sys.path.insert(0, {str(cache.parent)!r}); "
            f"import llamaindex_app; uvicorn.run(llamaindex_app.app, host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, 1800)  # the first run builds and persists the index
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


async def load(url: str, queries: list[str], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients posting queries round-robin for ``seconds``: QPS, p50/p99 and errors.

    The clients use aiohttp, which costs about 0.25 ms of CPU a request against httpx's 1.5 ms (measured here):
    on a 2-core machine the load generator shares the cores with the server it measures, so a heavy client
    would cap the faster server's figure first.
    """
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def worker(slot: int) -> None:
            nonlocal errors
            i = slot
            while time.perf_counter() < end:
                started = time.perf_counter()
                try:
                    async with session.post("/v1/retrieve", json={"query": queries[i % len(queries)], "top_k": 10}) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)
                i += concurrency

        await asyncio.gather(*(worker(s) for s in range(concurrency)))
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors,
            "qps": round(len(latencies) / seconds, 1), "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1)}


class Writer(threading.Thread):
    """Upserts 5 corpus documents every second (bounded: stops with the run)."""

    def __init__(self, url: str, documents: list[dict]) -> None:
        super().__init__(daemon=True)
        self.url, self.documents, self.stop_event, self.ok, self.failed = url, documents, threading.Event(), 0, 0

    def run(self) -> None:
        i = 0
        with httpx.Client(base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as client:
            while not self.stop_event.wait(1.0):
                batch = [{**d, "text": d["text"] + f" (revision {i})"} for d in self.documents[(5 * i) % 500:(5 * i) % 500 + 5]]
                response = client.post("/v1/documents", json={"documents": batch})
                self.ok += response.status_code == 200
                self.failed += response.status_code != 200
                i += 1


def run_levels(name: str, url: str, queries: list[str], documents: list[dict], levels: list[int], seconds: float,
               writer: bool = True) -> list[dict]:
    rows = []
    for concurrency in levels:
        thread = Writer(url, documents) if writer else None
        if thread:
            thread.start()
        row = asyncio.run(load(url, queries, concurrency, seconds))
        if thread:
            thread.stop_event.set()
            thread.join()
            row["writes_ok"], row["writes_failed"] = thread.ok, thread.failed
        row["server"] = name
        rows.append(row)
        print(f"{name:<28}{concurrency:>5}{row['qps']:>9.1f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['errors']:>8}"
              f"{str(row.get('writes_ok', '-')):>8}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR SciFact folder")
    parser.add_argument("--index", required=True, help="An index of that corpus (deepseek-rag eval --keep-index DIR)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes of our server.")
    parser.add_argument("--also-workers", type=int, default=0,
                        help="Also run ours with this many worker processes at the top concurrency (writer on).")
    parser.add_argument("--also-model", default=None, metavar="EXPORT",
                        help="Also run ours with this encoder (e.g. a `deepseek-rag export` ONNX folder of the index's "
                             "model) at the top concurrency (writer on).")
    parser.add_argument("--cache", default="bench-out/llamaindex-faiss-scifact", help="The LlamaIndex app's persisted index.")
    parser.add_argument("--skip-llamaindex", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = Path(args.data)
    queries = [json.loads(line)["text"] for line in open(data / "queries.jsonl", encoding="utf-8")][:300]
    documents = []
    with open(data / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            documents.append({"id": row["_id"], "text": row["text"], "metadata": {"title": row.get("title", "")}})
            if len(documents) == 500:
                break
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    results: dict = {"seconds": args.seconds, "workers": args.workers, "rows": []}
    print(f"{'server':<28}{'conc.':>5}{'QPS':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'writes':>8}")
    try:
        shutil.copytree(args.index, work / "index")
        proc, url = start_ours(work / "index", ["--workers", str(args.workers)])
        try:
            results["rows"] += run_levels("ours", url, queries, documents, levels, args.seconds)
            results["rows"] += run_levels("ours, no writer", url, queries, documents, [8], args.seconds, writer=False)
        finally:
            stop(proc)
        proc, url = start_ours(work / "index", ["--workers", str(args.workers), "--batch-window-ms", "0"])
        try:
            results["rows"] += run_levels("ours, batching off", url, queries, documents, [32], args.seconds)
        finally:
            stop(proc)
        extra_rows = ([(f"ours, {args.also_workers} workers", ["--workers", str(args.also_workers)])] if args.also_workers else []) + (
            [("ours, --model EXPORT", ["--workers", str(args.workers), "--model", args.also_model])] if args.also_model else [])
        for label, extra in extra_rows:  # one more server each, at the top concurrency
            proc, url = start_ours(work / "index", extra)
            try:
                results["rows"] += run_levels(label, url, queries, documents, [max(levels)], args.seconds)
            finally:
                stop(proc)
        if not args.skip_llamaindex:
            cache = Path(args.cache).resolve()
            cache.mkdir(parents=True, exist_ok=True)
            proc, url = start_llamaindex(data / "corpus.jsonl", cache)
            try:
                results["rows"] += run_levels("llamaindex (FAISS flat)", url, queries, documents, levels, args.seconds)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by = {(r["server"], r["concurrency"]): r for r in results["rows"]}
    top = max(levels)
    summary = {}
    if ("ours", top) in by and ("ours, batching off", 32) in by and top == 32:
        summary["batching_gain_at_32"] = round(by[("ours", 32)]["qps"] / max(1e-9, by[("ours, batching off", 32)]["qps"]), 2)
    if ("ours", 8) in by and ("ours, no writer", 8) in by:
        summary["p99_writer_vs_none_at_8"] = round(by[("ours", 8)]["p99_ms"] / max(1e-9, by[("ours, no writer", 8)]["p99_ms"]), 2)
    llamaindex = by.get(("llamaindex (FAISS flat)", top))
    if llamaindex:
        for label, key in [("ours", f"qps_vs_llamaindex_at_{top}"),
                           (f"ours, {args.also_workers} workers", f"qps_{args.also_workers}_workers_vs_llamaindex_at_{top}"),
                           ("ours, --model EXPORT", f"qps_model_export_vs_llamaindex_at_{top}")]:
            if (label, top) in by:
                summary[key] = round(by[(label, top)]["qps"] / max(1e-9, llamaindex["qps"]), 2)
    results["summary"] = summary
    for key, value in summary.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
