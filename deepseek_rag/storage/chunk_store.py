"""SQLite storage for the documents and chunks of one segment: written once, then only read.

A store is built in memory (``ChunkStore()``) or straight into a file (``ChunkStore.create(path)``) with the
chunk ids the index assigns — int64, never reused, the same ids the vectors carry. Once a segment is
published its file never changes, so readers open it with ``immutable=1``: no locks, no journal, nothing
written, which is also what makes an index on a read-only mount searchable. Several threads read at once
through a small pool of connections (SQLite releases the GIL while it works).

This module stores and reads rows (the reads behind metadata filters are ``chunk_store_filters.py``); which rows
are live (deletion markers) is the segment's business.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .. import jsonable
from ..documents import Chunk, Document
from ..errors import IndexFormatError, InvalidInputError
from ..vectors.filters import Filter
from .chunk_store_filters import FilterReads

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    section TEXT
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, ordinal);
"""
_CHUNK_COLUMNS = 'c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.section, d.metadata'
_READ_CONNECTIONS = 2  # opened with a read-only store: later ones are opened on demand


def metadata_json(metadata: Mapping[str, Any]) -> str:
    """Metadata as stored: JSON, non-finite floats as strings ("nan", "inf"), unknown types via ``str``."""
    return jsonable.dumps(metadata)


class ChunkStore(FilterReads):
    """The documents and chunks of one segment. ``ChunkStore()`` is an in-memory store to write into."""

    def __init__(self, path: str | Path | None = None, *, _read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.read_only = _read_only
        self._lock = threading.RLock()
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        self._bare_nan: bool | None = None  # whether some metadata is not strict JSON (first-release NaN)
        if _read_only:
            for _ in range(_READ_CONNECTIONS):
                self._pool.put(self._connect_read_only())
            self._check_schema()
            return
        target = str(self.path) if self.path is not None else ":memory:"
        self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._connections.append(self._conn)
        if self.path is not None:
            # Bulk build into a new file: it is fsynced once at finish(), and readers only see it after that.
            self._conn.execute("PRAGMA journal_mode=OFF")
            self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.executescript(_SCHEMA)
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('format_version', ?)", (str(STORE_FORMAT_VERSION),))

    # ----------------------------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | Path) -> ChunkStore:
        """A new store file to write into (it must not exist yet)."""
        path = Path(path)
        if path.exists():
            raise InvalidInputError(f"{path} exists already; a store file is written once")
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> ChunkStore:
        """Open a finished store file read-only; a missing or damaged one is an :class:`IndexFormatError`."""
        path = Path(path)
        if not path.is_file():
            raise IndexFormatError(f"{path} is missing: the index directory is damaged; rebuild the index")
        return cls(path, _read_only=True)

    def _connect_read_only(self) -> sqlite3.Connection:
        path = self.path.resolve()
        wal = path.with_name(path.name + "-wal")
        # A first-release store may still hold committed pages in its WAL: read those through SQLite's locks.
        mode = "mode=ro" if wal.is_file() and wal.stat().st_size > 0 else "mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexFormatError(f"{self.path} cannot be opened ({exc}); rebuild the index") from exc
        self._connections.append(conn)
        return conn

    def _check_schema(self) -> None:
        try:
            with self._reading() as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                missing = {"meta", "documents", "chunks"} - tables
                if missing:
                    raise IndexFormatError(
                        f"{self.path} is not a complete chunk store (table {', '.join(sorted(missing))} missing); "
                        "rebuild the index"
                    )
                row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise IndexFormatError(f"{self.path} is not a readable chunk store ({exc}); rebuild the index") from exc
        except IndexFormatError:
            self.close()
            raise
        version = row[0] if row else None
        if version is None or int(version) != STORE_FORMAT_VERSION:
            self.close()
            raise IndexFormatError(
                f"{self.path} has store format {version}; this library reads {STORE_FORMAT_VERSION}. "
                "Upgrade deepseek-rag or rebuild the index."
            )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if not self.read_only:
            with self._lock:
                yield self._conn
            return
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            try:
                conn = self._connect_read_only()
            except IndexFormatError:  # the file went away (an old version retired): wait for a pooled one
                conn = self._pool.get()
        try:
            yield conn
        finally:
            self._pool.put(conn)

    # ----------------------------------------------------------------------------------- writing
    def add_document(self, document: Document, chunks: Sequence[Chunk], ids: Sequence[int]) -> None:
        """Store ``document`` and its chunks under ``ids`` (one per chunk; also set on the chunks)."""
        self._check_writable()
        if len(ids) != len(chunks):
            raise InvalidInputError(f"{len(ids)} ids for {len(chunks)} chunks of {document.id!r}")
        with self._lock:
            self._conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?)", (document.id, document.text, metadata_json(document.metadata))
            )
            rows = []
            for chunk, chunk_id in zip(chunks, ids):
                chunk.id = int(chunk_id)
                rows.append((chunk.id, document.id, chunk.ordinal, chunk.start, chunk.end, chunk.text, chunk.section))
            self._conn.executemany('INSERT INTO chunks (id, doc_id, ordinal, start, "end", text, section) VALUES (?, ?, ?, ?, ?, ?, ?)', rows)

    def add_documents(self, rows: Iterable[tuple[Document, Sequence[Chunk], Sequence[int]]]) -> None:
        """Many :meth:`add_document` calls in one transaction: all of them land, or none."""
        self._check_writable()
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                for document, chunks, ids in rows:
                    self.add_document(document, chunks, ids)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def copy_from(self, source: Any, excluded_ids: np.ndarray | None = None) -> None:
        """Copy every document and chunk of ``source`` except the documents owning ``excluded_ids``."""
        self._check_writable()
        excluded = set(int(i) for i in excluded_ids) if excluded_ids is not None and len(excluded_ids) else set()
        if not isinstance(source, ChunkStore):  # another kind of store (Milvus): through the protocol's reads
            rows = []
            for doc_id, first in source.document_ids():
                if first is None or first in excluded:
                    continue
                chunks = source.chunks_of(doc_id)
                rows.append((source.get_document(doc_id), chunks, [c.id for c in chunks]))
            self.add_documents(rows)
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                for batch in source.iter_chunks():
                    docs: dict[str, None] = {}
                    kept = [c for c in batch if c.id not in excluded]
                    for c in kept:
                        docs.setdefault(c.doc_id)
                    if docs:
                        with source._reading() as conn:
                            placeholders = ",".join("?" * len(docs))
                            rows = conn.execute(
                                f"SELECT doc_id, text, metadata FROM documents WHERE doc_id IN ({placeholders})", list(docs)
                            ).fetchall()
                        order = {doc_id: i for i, doc_id in enumerate(docs)}  # keep the source's document order
                        rows.sort(key=lambda row: order[row[0]])
                        self._conn.executemany("INSERT OR IGNORE INTO documents VALUES (?, ?, ?)", rows)
                    self._conn.executemany(
                        'INSERT INTO chunks (id, doc_id, ordinal, start, "end", text, section) VALUES (?, ?, ?, ?, ?, ?, ?)',
                        [(c.id, c.doc_id, c.ordinal, c.start, c.end, c.text, c.section) for c in kept],
                    )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def finish(self, index_keys: Iterable[str] = ()) -> None:
        """Close a store built into a file and make it durable (fsync); open it again with :meth:`open`. Metadata
        keys in ``index_keys`` get an index, as in :meth:`write_to`."""
        self._check_writable()
        if self.path is None:
            raise InvalidInputError("an in-memory store has no file to finish; use write_to(path)")
        with self._lock:
            _create_metadata_indexes(self._conn, index_keys)
            self._conn.execute("PRAGMA journal_mode=DELETE")
            self.close()
        _fsync(self.path)

    def write_to(self, path: str | Path, index_keys: Iterable[str] = ()) -> None:
        """Copy this store into a new file at ``path``, fsynced (publishing an in-memory segment), with an index on
        each metadata key in ``index_keys`` (``IndexSettings.filter_fields``)."""
        path = Path(path)
        with self._lock, self._reading() as source:
            target = sqlite3.connect(str(path))
            try:
                source.backup(target)
                _create_metadata_indexes(target, index_keys)
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
        _fsync(path)

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidInputError(f"{self.path} belongs to a published segment and is read-only")

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing is best effort
                    pass

    # ----------------------------------------------------------------------------------- reads
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def has_document(self, doc_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)))

    def document_ids(self) -> list[tuple[str, int]]:
        """``(doc_id, first chunk id)`` of every document, in insertion order."""
        return [
            (r[0], r[1])
            for r in self._rows(
                "SELECT d.doc_id, (SELECT MIN(c.id) FROM chunks c WHERE c.doc_id = d.doc_id) FROM documents d ORDER BY d.rowid"
            )
        ]

    def get_document(self, doc_id: str) -> Document | None:
        rows = self._rows("SELECT doc_id, text, metadata FROM documents WHERE doc_id = ?", (doc_id,))
        return Document(rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def document_metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        doc_ids = list(dict.fromkeys(doc_ids))
        if not doc_ids:
            return {}
        rows = self._rows(f"SELECT doc_id, metadata FROM documents WHERE doc_id IN ({','.join('?' * len(doc_ids))})", doc_ids)
        return {r[0]: json.loads(r[1]) for r in rows}

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        """The chunk ids of one document, by ordinal ([] when absent)."""
        return [r[0] for r in self._rows("SELECT id FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,))]

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """Chunks by id (unknown ids are left out), each carrying its document's metadata."""
        ids = [int(i) for i in ids]
        found: dict[int, Chunk] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            part = ids[start : start + 900]
            rows = self._rows(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
                f"WHERE c.id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update((r[0], _chunk_from_row(r)) for r in rows)
        return found

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]:
        """Chunks of one document with ``first <= ordinal <= last``, in order."""
        rows = self._rows(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) "
            "WHERE c.doc_id = ? AND c.ordinal >= ? AND c.ordinal <= ? ORDER BY c.ordinal",
            (doc_id, first, last if last is not None else 2**62),
        )
        return [_chunk_from_row(r) for r in rows]

    def iter_chunks(self, batch_size: int = 4096) -> Iterator[list[Chunk]]:
        """Every stored chunk in id order, a batch at a time (deleted ones too: the segment filters those)."""
        last = -1
        while True:
            rows = self._rows(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id) WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, batch_size),
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [_chunk_from_row(r) for r in rows]

    def most_chunks_per_document(self) -> int:
        """The most chunks any stored document has (deleted documents included; 0 for an empty store)."""
        rows = self._rows("SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM chunks GROUP BY doc_id)")
        return int(rows[0][0])

    def long_document_chunk_ids(self, min_chunks: int, limit: int = 1_000_000) -> np.ndarray | None:
        """Ids (ascending) of the chunks of documents holding at least ``min_chunks`` chunks, deleted ones included;
        None when there are more than ``limit`` of them (then too many to be worth checking against)."""
        rows = self._rows(
            "SELECT id FROM chunks WHERE doc_id IN (SELECT doc_id FROM chunks GROUP BY doc_id HAVING COUNT(*) >= ?) "
            "ORDER BY id LIMIT ?", (int(min_chunks), int(limit) + 1),
        )
        if len(rows) > limit:
            return None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id, ascending."""
        rows = self._rows("SELECT id FROM chunks ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def document_span(self, doc_id: str, start: int, end: int) -> str:
        """``document.text[start:end]`` read without loading the whole document."""
        rows = self._rows(
            "SELECT substr(text, ?, ?) FROM documents WHERE doc_id = ?", (start + 1, max(0, end - start), doc_id)
        )
        return rows[0][0] if rows else ""

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) stored, deleted ones included."""
        docs = self._rows("SELECT COUNT(*) FROM documents")[0][0]
        chunks = self._rows("SELECT COUNT(*) FROM chunks")[0][0]
        return int(docs), int(chunks)

    def __del__(self) -> None:  # pragma: no cover - best-effort cleanup of forgotten stores
        try:
            self.close()
        except Exception:
            pass


def _create_metadata_indexes(conn: sqlite3.Connection, keys: Iterable[str]) -> None:
    """An expression index per filtered key: ``json_extract(metadata, '$."key"')`` (what sql_filter.py compares)."""
    for key in keys:
        Filter.parse({key: {"$exists": True}})  # a key a filter can name: letters, digits, _ - .
        name = "meta_" + "".join(c if c.isalnum() else "_" for c in key)
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON documents(json_extract(metadata, '$.\"{key}\"'))")
    if keys:
        conn.execute("ANALYZE")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunk_from_row(row: Sequence[Any]) -> Chunk:
    return Chunk(
        id=row[0], doc_id=row[1], ordinal=row[2], start=row[3], end=row[4], text=row[5], section=row[6],
        metadata=json.loads(row[7]) if len(row) > 7 else {},
    )
