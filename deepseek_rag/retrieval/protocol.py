"""What a retriever needs of an index: the small ``SearchableIndex`` protocol (and so no import of the index).

A :class:`~deepseek_rag.retrieval.retriever.Retriever` works on anything with an encoder, a flag for its BM25
side, and ``reading()`` — a context manager giving the :class:`IndexView` one search runs on from start to
finish. ``DocumentIndex`` gives its current snapshot; ``IndexHandle`` gives the current version and counts the
search as in flight, so an old version is closed only after its last search ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..documents import Chunk


@runtime_checkable
class IndexView(Protocol):
    """One consistent state of an index: searches, and the chunk reads that turn their ids into hits."""

    def search_vectors(
        self, query_vectors: np.ndarray, k: int, *, filters: Mapping[str, Any] | None = None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def search_sparse(
        self, queries: Sequence[str], k: int, *, filters: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]: ...

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]: ...

    def document_span(self, doc_id: str, start: int, end: int) -> str: ...

    def most_chunks_per_document(self) -> int | None:
        """An upper bound on the chunks any document holds (None: unknown). Under ``focus_documents="auto"`` a
        bound below ``top_k`` skips the focus rule; a view without this method always runs it."""
        ...

    def long_document_chunk_ids(self, min_chunks: int) -> np.ndarray | None:
        """A superset of the ids of the chunks of documents holding at least ``min_chunks`` chunks (None: unknown).
        Under ``focus_documents="auto"`` a query none of whose candidate chunks is in it skips the focus rule."""
        ...


@runtime_checkable
class SearchableIndex(Protocol):
    """An index a retriever can search (``DocumentIndex``, ``IndexHandle``)."""

    @property
    def encoder(self) -> Any: ...

    @property
    def has_sparse(self) -> bool: ...

    # ``has_dense`` (False for a lexical-only index) is read when present; without it an index has vectors.

    def reading(self) -> AbstractContextManager[IndexView]: ...
