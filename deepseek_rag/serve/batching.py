"""Dynamic batching of query encoding: queries that arrive within a short window share one forward pass.

As text-embeddings-inference does it: the first query opens a batch, which closes after ``window_s`` or at
``max_batch`` queries; one encoder thread runs the batches in turn, so a burst of concurrent requests costs a
few forward passes instead of one each. Each query's wait is the ``queue`` stage, the forward pass the
``encode`` stage, and every batch's size goes to ``deepseek_rag_encode_batch_size``. With a window of 0 every
query is encoded alone (still on the encoder thread): the baseline the benchmark compares against.

A batch's requests then wake together, and :class:`SearchCoalescer` runs those that ask the same thing as one
multi-query search, so a burst costs one thread hop, one version pin and one faiss call per group.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from starlette.concurrency import run_in_threadpool

from .metrics import ServeMetrics

logger = logging.getLogger(__name__)


class QueryBatcher:
    """``await batcher.encode(text)`` → the query's unit vector, encoded together with its neighbours in time."""

    def __init__(self, encoder: Any, metrics: ServeMetrics, *, window_s: float, max_batch: int, arm: str = "default") -> None:
        self.encoder = encoder
        self.metrics = metrics
        self.window_s = window_s
        self.max_batch = max_batch
        self.arm = arm
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="encode")
        self._queue: asyncio.Queue[tuple[str, asyncio.Future, float]] | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="query-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def encode(self, text: str) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("the query batcher is not running")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future, time.perf_counter()))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            if self.window_s > 0:
                deadline = loop.time() + self.window_s
                while len(batch) < self.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except asyncio.TimeoutError:
                        break
            live = [item for item in batch if not item[1].done()]  # a client that hung up needs no vector
            if not live:
                continue
            started = time.perf_counter()
            for _, _, queued in live:
                self.metrics.stage("queue", started - queued, self.arm)
            try:
                vectors = await loop.run_in_executor(self._executor, self.encoder.encode_queries, [t for t, _, _ in live])
            except Exception as exc:  # every waiting request gets the error; the loop keeps serving
                for _, future, _ in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.metrics.stage("encode", time.perf_counter() - started, self.arm)
            self.metrics.encode_batch_size.labels(self.arm).observe(len(live))
            for (_, future, _), vector in zip(live, vectors):
                if not future.done():
                    future.set_result(vector)


def search_key(*params: Any) -> Hashable | None:
    """A key equal for equal search parameters (filters included); None when they cannot be compared as JSON."""
    try:
        return json.dumps(params, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


class SearchCoalescer:
    """``await coalescer.search(key, params, query, vector)`` → ``([hits], version)``, searched with its neighbours.

    Single-query requests that become ready in the same turn of the event loop (one encode batch wakes its
    requests together) and share ``key`` are searched by one ``search(queries, vectors, *params)`` call on a
    worker thread; each gets its own row of the result and the version they all came from. When a group's
    search fails, its requests are searched one by one, so an error stays with the request that caused it.
    """

    def __init__(self, search: Callable[..., tuple[list, Any]]) -> None:
        self._search = search
        self._pending: dict[Hashable, tuple[tuple, list[tuple[str, Any, asyncio.Future]]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    async def search(self, key: Hashable, params: tuple, query: str, vector: np.ndarray | None) -> tuple[list, Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.setdefault(key, (params, []))[1].append((query, vector, future))
        if not self._scheduled:  # after the requests woken with this one have joined
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        loop = asyncio.get_running_loop()
        for params, items in pending.values():
            task = loop.create_task(self._run(params, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, params: tuple, items: list[tuple[str, Any, asyncio.Future]]) -> None:
        live = [item for item in items if not item[2].done()]  # a client that hung up needs no search
        if not live:
            return
        vectors = None if live[0][1] is None else np.stack([vector for _, vector, _ in live])
        try:
            results, version = await run_in_threadpool(self._search, [q for q, _, _ in live], vectors, *params)
        except Exception as exc:
            if len(live) > 1:
                await asyncio.gather(*(self._run(params, [item]) for item in live))
            elif not live[0][2].done():
                live[0][2].set_exception(exc)
            return
        for (_, _, future), hits in zip(live, results):
            if not future.done():
                future.set_result(([hits], version))
