"""Dynamic batching of query encoding: queries that arrive within a short window share one forward pass.

As text-embeddings-inference does it: the first query opens a batch, which closes after ``window_s`` or at
``max_batch`` queries; one encoder thread runs the batches in turn, so a burst of concurrent requests costs a
few forward passes instead of one each. Each query's wait is the ``queue`` stage, the forward pass the
``encode`` stage, and every batch's size goes to ``deepseek_rag_encode_batch_size``. With a window of 0 every
query is encoded alone (still on the encoder thread): the baseline the benchmark compares against.

Writes share that thread: :class:`DocumentEncodingLane` hands the writer's chunks to it a slice at a time, so a
query batch that arrives during an upsert waits for one slice, not for the whole upsert's forward passes (and
the two never run at once, each fighting the other for the same cores).

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

    def run_on_encoder(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``func(*args, **kwargs)`` on the encoder thread, between query batches; blocks the calling thread (never
        call it from the event loop). Before :meth:`start` or after :meth:`stop` it runs on the caller's thread."""
        if self._task is None or self._task.done():
            return func(*args, **kwargs)
        try:
            future = self._executor.submit(func, *args, **kwargs)
        except RuntimeError:  # shut down meanwhile
            return func(*args, **kwargs)
        return future.result()

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


class DocumentEncodingLane:
    """The encoder as the writer sees it: ``encode_documents`` runs on the query batcher's encoder thread in
    slices of about ``slice_tokens`` tokens, one slice queued at a time, so query batches take turns with it.

    Everything else is the wrapped encoder's (attributes are looked up on it). Called from the writer's thread;
    the result is the same vectors, in the same order, as one ``encoder.encode_documents(texts)`` call."""

    def __init__(self, encoder: Any, batcher: QueryBatcher, *, slice_tokens: int = 2048) -> None:
        self._encoder, self._batcher, self._slice_tokens = encoder, batcher, slice_tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode_documents(self, texts: list[str], *, batch_size: int | None = None, progress: bool | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return self._encoder.encode_documents(texts)
        lengths = [len(ids) for ids in map(self._encoder.token_ids, texts)]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # similar lengths share a slice: less padding
        vectors: list[np.ndarray | None] = [None] * len(texts)
        start = 0
        while start < len(order):
            width = min(max(lengths[order[start]], 1), self._encoder.max_seq_length)
            stop = start + max(1, self._slice_tokens // width)
            picked = order[start:stop]
            encoded = self._batcher.run_on_encoder(self._encoder.encode_documents, [texts[i] for i in picked],
                                                   batch_size=batch_size, progress=False)
            for i, vector in zip(picked, encoded):
                vectors[i] = vector
            start = stop
        return np.stack(vectors)


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
