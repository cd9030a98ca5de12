"""The ``ChunkStoreProtocol`` every chunk store implements: the reads a segment's documents and chunks answer.

Two stores implement it: :class:`~deepseek_rag.storage.chunk_store.ChunkStore` (SQLite, one file per segment)
and :class:`~deepseek_rag.storage.milvus_store.MilvusChunkStore` (the chunk fields of a segment's Milvus
collection, read with scalar queries, so every replica reads one source of truth). Snapshots, the filter
planner, merging and the BM25 rebuild use only these methods. Which rows are live (deletion markers) is the
segment's business, never the store's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..documents import Chunk, Document


@runtime_checkable
class ChunkStoreProtocol(Protocol):
    """The documents and chunks of one segment, read-only once published."""

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) stored, deleted ones included."""
        ...

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id, ascending."""
        ...

    def has_document(self, doc_id: str) -> bool: ...

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        """The chunk ids of one document by ordinal ([] when absent)."""
        ...

    def most_chunks_per_document(self) -> int | None:
        """The most chunks any stored document has, deleted ones included (None: unknown without a costly scan)."""
        ...

    def long_document_chunk_ids(self, min_chunks: int) -> np.ndarray | None:
        """Ids (ascending) of the chunks of documents with at least ``min_chunks`` chunks, deleted ones included
        (None: unknown without a costly scan, or too many)."""
        ...

    def document_ids(self) -> list[tuple[str, int]]:
        """``(doc_id, first chunk id)`` of every document, in insertion order."""
        ...

    def get_document(self, doc_id: str) -> Document | None: ...

    def document_metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...

    def metadata_keys(self, excluded_ids: np.ndarray | None = None) -> set[str]: ...

    def document_span(self, doc_id: str, start: int, end: int) -> str:
        """``document.text[start:end]``."""
        ...

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]: ...

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]: ...

    def iter_chunks(self, batch_size: int = 4096) -> Iterator[list[Chunk]]: ...

    def chunk_ids_matching(self, filters: Any, among: np.ndarray | None = None) -> np.ndarray:
        """Ids (ascending) of the chunks whose document passes ``filters`` (among ``among`` when given)."""
        ...

    def sample_share(self, filters: Any, sample: int = 2000) -> tuple[int, int]:
        """(documents passing, documents looked at): the filter planner's selectivity estimate."""
        ...

    def non_numeric(self, key: str, limit: int = 5) -> tuple[int, list[str]]: ...

    def close(self) -> None: ...


def documents_of(store: ChunkStoreProtocol, doc_ids: Iterable[str]) -> Mapping[str, Document]:
    """The documents ``doc_ids`` of any store (absent ones left out)."""
    found = {}
    for doc_id in doc_ids:
        document = store.get_document(doc_id)
        if document is not None:
            found[doc_id] = document
    return found
