"""A segment: one immutable part of an index — documents and chunks, their vectors, their BM25 postings.

Segments are built in memory by a writer (one per ``add``/``upsert`` call), written once into
``segments/<name>/`` when a version is published, and from then on only read: deletions never touch a
segment's files, they are markers (sorted chunk-id arrays) that a version records beside it and searches
apply as id filters. Merging (``merge``) writes a new segment from several, leaving deleted rows out, as
Lucene and Milvus compact theirs. The three parts share the chunk ids, which are the store's primary keys,
the vector ids and the postings' ids at once.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..documents import Chunk, Document
from ..sparse.bm25 import Postings, SparseConfig
from ..vectors.faiss_store import FaissVectorStore
from ..errors import InvalidInputError
from .chunk_store import ChunkStore
from .layout import fsync_path

logger = logging.getLogger(__name__)

STORE_FILE = "chunks.sqlite"
VECTORS_FILE = "vectors.faiss"
POSTINGS_DIR = "postings"


class Segment:
    """Chunks + vectors + postings under one name; ``path`` is None until the segment is written."""

    def __init__(
        self, name: str, store: ChunkStore, vectors: FaissVectorStore | None, postings: Postings | None,
        path: Path | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.vectors = vectors  # None in a lexical-only index (IndexSettings.dense="off")
        self.postings = postings
        self.path = path
        self.chunk_ids = vectors.ids if vectors is not None and len(vectors) else store.chunk_ids()
        self.documents, self.chunks = store.counts()
        self._most_chunks: int | None = -1  # -1: not read yet
        self._long_ids: dict[int, np.ndarray | None] = {}  # long_document_chunk_ids by min_chunks

    def most_chunks_per_document(self) -> int | None:
        """The most chunks one document of this segment has, deleted ones included (read once: a segment never
        changes); None when its store cannot tell cheaply."""
        if self._most_chunks == -1:
            self._most_chunks = self.store.most_chunks_per_document()
        return self._most_chunks

    def long_document_chunk_ids(self, min_chunks: int) -> np.ndarray | None:
        """Ids of the chunks of this segment's documents holding at least ``min_chunks`` chunks, deleted ones
        included (read once for each of a few ``min_chunks``); None when its store cannot tell cheaply."""
        if min_chunks in self._long_ids:
            return self._long_ids[min_chunks]
        ids = self.store.long_document_chunk_ids(min_chunks)
        if len(self._long_ids) < 8:  # one entry per top_k a retriever asks for: a handful
            self._long_ids[min_chunks] = ids
        return ids

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return f"Segment({self.name!r}, {self.documents} documents, {self.chunks} chunks, {where})"

    # ---------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        name: str,
        rows: Sequence[tuple[Document, list[Chunk], Sequence[int]]],
        vectors: np.ndarray | None,
        template: FaissVectorStore,
        term_lists: Sequence[list[str]] | None,
        algorithms: Sequence[str],
    ) -> Segment:
        """An in-memory segment of ``rows`` (document, its chunks, their ids): every part built before any
        is shared, so a failure leaves nothing behind. ``vectors`` None: a lexical-only segment."""
        ids = np.asarray([i for _, _, chunk_ids in rows for i in chunk_ids], dtype=np.int64)
        store = ChunkStore()
        try:
            store.add_documents(rows)
            store_vectors = None
            if vectors is not None:
                store_vectors = template.empty_like()
                store_vectors.add(ids, vectors)
            postings = Postings.from_terms(ids, term_lists, algorithms) if term_lists is not None else None
        except BaseException:
            store.close()
            raise
        return cls(name, store, store_vectors, postings)

    @classmethod
    def merge(
        cls,
        name: str,
        parts: Sequence[tuple[Segment, np.ndarray | None]],
        template: FaissVectorStore,
        folder: Path | None,
        sparse: SparseConfig | None,
        index_keys: Sequence[str] = (),
    ) -> Segment:
        """A segment holding every chunk of ``parts`` except each part's excluded (deleted) ids; written into
        ``folder`` when given (and reopened from there), else kept in memory."""
        if folder is not None:
            folder.mkdir(parents=True)
        store = ChunkStore.create(folder / STORE_FILE) if folder is not None else ChunkStore()
        try:
            for segment, excluded in parts:
                store.copy_from(segment.store, excluded)
            vectors = None
            if any(s.vectors is not None for s, _ in parts):
                if not all(s.vectors is not None for s, _ in parts):
                    raise InvalidInputError("cannot merge segments with vectors and lexical-only ones")
                vectors = FaissVectorStore.merged(template, [(s.vectors, excluded) for s, excluded in parts])
            postings = None
            if sparse is not None and all(s.postings is not None for s, _ in parts):
                postings = Postings.merge([
                    (s.postings, None if excluded is None or not len(excluded)
                     else ~np.isin(np.asarray(s.postings.chunk_ids), excluded)) for s, excluded in parts
                ])
        except BaseException:
            store.close()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if folder is None:
            return cls(name, store, vectors, postings)
        store.finish(list(index_keys))
        _write_parts(folder, vectors, postings, sparse)
        return cls.open(folder, name, sparse, dense=vectors is not None)

    def write(self, folder: Path, sparse: SparseConfig | None, index_keys: Sequence[str] = ()) -> Segment:
        """Write this in-memory segment into the new folder ``folder`` (fsynced) and return it opened from there;
        ``index_keys`` are metadata keys the chunk store indexes for filters."""
        folder.mkdir(parents=True)
        try:
            self.store.write_to(folder / STORE_FILE, list(index_keys))
            _write_parts(folder, self.vectors, self.postings, sparse)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Segment.open(folder, self.name, sparse, dense=self.vectors is not None)

    # ---------------------------------------------------------------------------------- reading
    @classmethod
    def open(cls, folder: Path, name: str, sparse: SparseConfig | None, *, mmap: bool = True, dense: bool = True) -> Segment:
        """Open a written segment read-only (IVF lists and postings memory-mapped); ``dense=False``: one of a
        lexical-only index, which has no vectors file."""
        store = ChunkStore.open(folder / STORE_FILE)
        try:
            vectors = None
            if dense:
                vectors = FaissVectorStore.open(folder / VECTORS_FILE, mmap=mmap)
            postings = None
            if sparse is not None and (folder / POSTINGS_DIR).is_dir():
                postings = Postings.open(folder / POSTINGS_DIR, sparse)
        except BaseException:
            store.close()
            raise
        return cls(name, store, vectors, postings, folder)

    def files(self) -> dict[str, int]:
        """File name (relative to the segment folder) → size, for the version record."""
        if self.path is None:
            return {}
        return {str(p.relative_to(self.path)): p.stat().st_size for p in sorted(self.path.rglob("*"))
                if p.is_file() and not p.name.startswith("deletes-")}

    def close(self) -> None:
        self.store.close()


def _write_parts(folder: Path, vectors: FaissVectorStore | None, postings: Postings | None,
                 sparse: SparseConfig | None) -> None:
    if vectors is not None:
        vectors.save(folder / VECTORS_FILE)
    if postings is not None and sparse is not None:
        postings.save(folder / POSTINGS_DIR, sparse)
        for path in (folder / POSTINGS_DIR).iterdir():
            fsync_path(path)
        fsync_path(folder / POSTINGS_DIR)
    fsync_path(folder)


def write_deletes(folder: Path, version_tag: str, deleted: np.ndarray) -> tuple[str, int]:
    """Write a segment's deleted ids as of a version; returns (file name, bytes)."""
    name = f"deletes-{version_tag}.npy"
    path = folder / name
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        np.save(handle, np.asarray(deleted, dtype=np.int64), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return name, path.stat().st_size


def read_deletes(folder: Path, name: str | None) -> np.ndarray:
    """A segment's deleted ids from the file a version names (empty when none)."""
    if not name:
        return np.empty(0, dtype=np.int64)
    from ..errors import IndexFormatError

    try:
        deleted = np.load(folder / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{folder / name} (deletion markers) cannot be read ({exc}); rebuild the index") from exc
    return np.asarray(deleted, dtype=np.int64)
