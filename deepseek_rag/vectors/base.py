"""The ``VectorStore`` protocol every vector backend implements, and the id filter searches take.

A store holds unit-length float32 vectors under int64 ids chosen by the caller (the chunk ids) and answers
top-k inner-product searches, higher scores first. The shared signature is small, as txtai's ANN base and
faiss keep theirs: backend knobs (``nprobe``, ``efSearch``, Milvus's ``ef``) travel in ``params``, never as
arguments of their own. What a backend can do beyond the minimum it says in :class:`Capabilities`.

Adding a backend: implement the methods below in ``vectors/<name>.py``, import its library inside the
functions that need it (a missing one raises an error naming the extra), and register the name in
:func:`open_vector_store`. Then run the shared contract tests (``tests/test_vector_store_contract.py``)
over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidInputError


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports beyond add / search."""

    delete: bool
    """``remove(ids)`` deletes vectors (else deletions are only ever markers applied at search time)."""
    metadata_filter: bool
    """``search(filter=Filter)`` evaluates metadata filters inside the backend (Milvus); else only ids."""
    mmap: bool
    """Saved files are memory-mapped when opened (RAM holds only what searches touch)."""
    gpu: bool
    """Searches may run on a GPU."""


@dataclass(frozen=True)
class IdFilter:
    """Restrict a search by id: only ``allowed`` ids (when given), never ``excluded`` ones (deletion markers).

    Both are sorted unique int64 arrays.
    """

    allowed: np.ndarray | None = None
    excluded: np.ndarray | None = None
    cache: dict = field(default_factory=dict, compare=False, repr=False)
    """Backends keep what they derive from the ids here (a faiss selector), built once per filter."""

    @classmethod
    def of(cls, allowed: Any = None, excluded: Any = None) -> IdFilter | None:
        """An id filter from array-likes (None when neither restricts anything)."""
        allowed_ids = None if allowed is None else np.unique(np.asarray(allowed, dtype=np.int64))
        excluded_ids = None if excluded is None or len(excluded) == 0 else np.unique(np.asarray(excluded, dtype=np.int64))
        if allowed_ids is not None and excluded_ids is not None:
            allowed_ids, excluded_ids = np.setdiff1d(allowed_ids, excluded_ids, assume_unique=True), None
        if allowed_ids is None and excluded_ids is None:
            return None
        return cls(allowed_ids, excluded_ids)


@dataclass(frozen=True)
class MetadataFilter:
    """A document-metadata filter for a backend that evaluates it inside the search
    (``capabilities.metadata_filter``), with optional id restrictions (deletion markers) on top."""

    filter: Any
    """A parsed :class:`~deepseek_rag.vectors.filters.Filter`."""
    ids: IdFilter | None = None


@runtime_checkable
class VectorStore(Protocol):
    """A searchable set of vectors keyed by int64 ids (see the module docstring)."""

    @property
    def dim(self) -> int: ...

    @property
    def spec(self) -> str:
        """The backend's own description of the index (a faiss factory string, a Milvus index type)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def is_trained(self) -> bool: ...

    def train(self, sample: np.ndarray) -> None:
        """Learn the index's codebooks from ``sample`` (a no-op for exact indexes or once trained)."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> int:
        """Delete ``ids``; returns how many were present."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, filter: IdFilter | Any | None = None, params: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, each ``(n, k)``, best first; missing results are id -1, score -inf. ``filter``: an
        :class:`IdFilter`, or a :class:`MetadataFilter` where ``capabilities.metadata_filter``."""
        ...

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (as the index holds them: decoded codes for compressed indexes)."""
        ...

    def __len__(self) -> int: ...

    def save(self, path: str | Path) -> None: ...


BACKENDS = ("faiss", "milvus")


def open_vector_store(backend: str, path: str | Path, **options: Any) -> VectorStore:
    """Open a saved store of ``backend`` (imported lazily): a FAISS file, or a Milvus pointer file."""
    if backend == "faiss":
        from .faiss_store import FaissVectorStore

        return FaissVectorStore.open(path, **options)
    if backend == "milvus":
        from .milvus import MilvusVectorStore

        return MilvusVectorStore.open(path, **options)
    raise InvalidInputError(f"unknown vector backend {backend!r}; known: {', '.join(BACKENDS)}")


def search_params(params: Mapping[str, Any] | None, known: tuple[str, ...], backend: str) -> dict[str, Any]:
    """``params`` checked against the knobs ``backend`` understands (an unknown one is a clear error)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidInputError(f"search params {unknown} are not known to the {backend} backend; known: {', '.join(known)}")
    return params
