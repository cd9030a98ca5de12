"""What one served index does for a request: encode (batched), search one pinned version, fetch, answer.

A :class:`ServedIndex` owns an ``IndexHandle`` (readers), a ``QueryBatcher`` (query encoding) and an
``IndexWriter`` (the one writer). Every request runs on one version from start to finish — the version is pinned
when its search begins and named in the response — and is timed by stage (search vs fetch are told apart by
wrapping the version's reads). The HTTP layer (``routes.py``) only translates to and from JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..documents import Document, DocumentHit, Hit
from ..index_handle import IndexHandle
from ..retrieval.retriever import Retriever
from .batching import QueryBatcher, SearchCoalescer, search_key
from .metrics import ServeMetrics
from .settings import ServeSettings
from .writer import IndexWriter


class _TimedView:
    """A snapshot whose searches count as the ``search`` stage and whose chunk reads as ``fetch``."""

    def __init__(self, snapshot: Any, record: Callable[[str, float], None]) -> None:
        self._snapshot, self._record = snapshot, record

    def _timed(self, stage: str, func: Callable, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            self._record(stage, time.perf_counter() - started)

    def search_vectors(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("search", self._snapshot.search_vectors, *args, **kwargs)

    def search_sparse(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("search", self._snapshot.search_sparse, *args, **kwargs)

    def get_chunks(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("fetch", self._snapshot.get_chunks, *args, **kwargs)

    def chunks_of(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("fetch", self._snapshot.chunks_of, *args, **kwargs)

    def document_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("fetch", self._snapshot.document_span, *args, **kwargs)

    def most_chunks_per_document(self) -> int | None:
        return self._snapshot.most_chunks_per_document()  # cached per segment: not a stage worth timing

    def long_document_chunk_ids(self, min_chunks: int) -> Any:
        return self._snapshot.long_document_chunk_ids(min_chunks)  # cached per segment too


class _Pinned:
    """The ``SearchableIndex`` of one pinned version (what a per-request ``Retriever`` searches)."""

    def __init__(self, view: _TimedView, encoder: Any, has_sparse: bool, has_dense: bool = True) -> None:
        self._view, self.encoder, self.has_sparse, self.has_dense = view, encoder, has_sparse, has_dense

    @contextmanager
    def reading(self) -> Iterator[_TimedView]:
        yield self._view


class ServedIndex:
    """One index directory behind the API (an A/B arm, when there are several)."""

    def __init__(self, settings: ServeSettings, metrics: ServeMetrics, *, name: str = "default",
                 path: Path | None = None, encoder: Any = None) -> None:
        self.name = name
        self.settings = settings
        self.metrics = metrics
        self.path = Path(path or settings.index)
        self.handle = IndexHandle(self.path, encoder, watch=settings.watch_s)
        self.encoder = self.handle.encoder
        self.batcher = QueryBatcher(self.encoder, metrics, window_s=settings.batch_window_ms / 1000,
                                    max_batch=settings.max_batch, arm=name)
        self.searches = SearchCoalescer(self._search)
        self.writer = IndexWriter(self.path, self.encoder, self.handle, lock_wait_s=settings.lock_wait_s)
        self._seen_version = self.handle.version
        self.observe()

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.writer.close()
        self.handle.close()

    def observe(self) -> None:
        """Refresh the index gauges (and count a swap when the version moved)."""
        snapshot = self.handle.snapshot()
        if snapshot.version != self._seen_version:
            self.metrics.index_swaps.labels(self.name).inc()
            self._seen_version = snapshot.version
        documents, chunks = snapshot.counts()
        self.metrics.observe_index(self.name, snapshot.version, documents, chunks)

    # ------------------------------------------------------------------------------------ reading
    async def encode(self, queries: list[str]) -> np.ndarray:
        """Query vectors, each query joining the batcher's next forward pass."""
        vectors = await asyncio.gather(*(self.batcher.encode(q) for q in queries))
        return np.stack(vectors)

    def _mode(self, mode: str | None) -> str:
        if mode is not None:
            return mode
        if not self.handle.has_dense:
            return "sparse"  # a lexical-only index
        return "hybrid" if self.handle.has_sparse else "dense"

    async def retrieve(self, queries: list[str], *, top_k: int, level: str, filters: dict | None, mode: str | None,
                       focus_documents: int | str = "auto", expand_neighbors: int = 0,
                       window_tokens: int | None = None) -> tuple[list[list[Hit]], int | None]:
        """Hits per query (chunk level; at document level one hit per document) and the version they come from."""
        mode = self._mode(mode)
        if mode != "dense" and not self.handle.has_sparse:
            from ..errors import InvalidInputError

            raise InvalidInputError(f"mode={mode!r} needs a BM25 side and this index has none; use mode 'dense'")
        if mode != "sparse" and not self.handle.has_dense:
            from ..errors import InvalidInputError
            from ..storage.snapshot import LEXICAL_ONLY

            raise InvalidInputError(f"mode={mode!r} needs vectors: {LEXICAL_ONLY}")
        vectors = None if mode == "sparse" else await self.encode(queries)
        params = (top_k, level, filters, mode, focus_documents, expand_neighbors, window_tokens)
        key = search_key(*params) if len(queries) == 1 and self.batcher.window_s > 0 else None
        if key is not None:  # batching on: searched together with the queries encoded alongside
            return await self.searches.search(key, params, queries[0], None if vectors is None else vectors[0])
        return await run_in_threadpool(self._search, queries, vectors, *params)

    def _search(self, queries: list[str], vectors: np.ndarray | None, top_k: int, level: str, filters: dict | None,
                mode: str, focus_documents: int | str, expand_neighbors: int,
                window_tokens: int | None = None) -> tuple[list[list[Hit]], int | None]:
        record = lambda stage, seconds: self.metrics.stage(stage, seconds, self.name)  # noqa: E731
        with self.handle.reading() as snapshot:
            pinned = _Pinned(_TimedView(snapshot, record), self.encoder, snapshot.has_sparse, snapshot.dense)
            retriever = Retriever(pinned, top_k=top_k, mode=mode, focus_documents=focus_documents if level == "chunk" else 0,
                                  expand_neighbors=expand_neighbors, window_tokens=window_tokens if level == "chunk" else None)
            if level == "document":
                if vectors is None:
                    documents = retriever.retrieve_documents_batch(queries, top_k, filters=filters)
                else:
                    documents = retriever.documents_by_vectors(vectors, top_k, filters=filters, queries=queries)
                return [[_document_hit(d) for d in docs] for docs in documents], snapshot.version
            if vectors is None:
                hits = retriever.retrieve_batch(queries, top_k, filters=filters)
            else:
                hits = retriever.search_by_vectors(vectors, top_k, filters=filters, queries=queries)
            return hits, snapshot.version

    async def answer(self, question: str, *, top_k: int, filters: dict | None, stream: bool) -> tuple[Any, int | None, Any]:
        """(Answer, version, release): the answer's text stream (when streaming) runs on the pinned version, which
        stays open until ``release()`` is called."""
        from ..generation import answer

        record = lambda stage, seconds: self.metrics.stage(stage, seconds, self.name)  # noqa: E731
        reading = self.handle.reading()
        snapshot = reading.__enter__()
        try:
            pinned = _Pinned(_TimedView(snapshot, record), self.encoder, snapshot.has_sparse, snapshot.dense)
            retriever = Retriever(pinned, top_k=top_k)
            result = await run_in_threadpool(answer, retriever, question, top_k=top_k, filters=filters, stream=stream)
        except BaseException:
            reading.__exit__(None, None, None)
            raise
        return result, snapshot.version, lambda: reading.__exit__(None, None, None)

    def get_document(self, doc_id: str) -> tuple[Document | None, int | None]:
        snapshot = self.handle.snapshot()
        return snapshot.get_document(doc_id), snapshot.version


def _document_hit(document: DocumentHit) -> Hit:
    best = document.hits[0]
    return Hit(best.chunk_id, document.doc_id, document.score, best.start, best.end, best.text, best.ordinal,
               best.section, document.metadata)
