"""SQLite storage for documents and chunks: the source of truth an index directory is rebuilt around.

Chunk ids are ``INTEGER PRIMARY KEY AUTOINCREMENT`` and double as the FAISS ids, so the chunk ↔ vector
map is the identity and an id is never reused after a delete. Changes collect in one open transaction
and become visible to other processes only at :meth:`ChunkStore.commit`; that commit is the moment an
index directory moves from its old state to its new one (see ``document_index.py``).

One connection is shared by every thread, guarded by a lock: SQLite serialises writers anyway, and the
index process's own readers must see its uncommitted writes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..documents import Chunk, Document
from ..errors import IndexFormatError, InvalidInputError

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
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id),
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    section TEXT
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, ordinal);
"""

_FILTER_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class ChunkStore:
    """Documents and their chunks in one SQLite file (or in memory when ``path`` is None)."""

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None and not create and not self.path.is_file():
            raise IndexFormatError(f"{self.path} is missing: this is not an index directory (build one with `deepseek-rag index`)")
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path) if self.path else ":memory:", check_same_thread=False, isolation_level=None
            )
            if self.path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            version = self.get_meta("format_version")
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"{self.path} is not a readable chunk store ({exc}); rebuild the index") from exc
        if version is None:
            self._conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(STORE_FORMAT_VERSION),))
        elif int(version) != STORE_FORMAT_VERSION:
            raise IndexFormatError(
                f"{self.path} has store format {version}; this library reads {STORE_FORMAT_VERSION}. "
                "Upgrade deepseek-rag or rebuild the index."
            )
        self._in_transaction = False

    # --------------------------------------------------------------------------------- transactions
    def _begin(self) -> None:
        if not self._in_transaction:
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True

    def commit(self) -> None:
        """Make every change since the last commit durable and visible, atomically."""
        with self._lock:
            if self._in_transaction:
                self._conn.execute("COMMIT")
                self._in_transaction = False

    def rollback(self) -> None:
        with self._lock:
            if self._in_transaction:
                self._conn.execute("ROLLBACK")
                self._in_transaction = False

    @property
    def dirty(self) -> bool:
        """True while changes wait for :meth:`commit`."""
        return self._in_transaction

    def close(self) -> None:
        with self._lock:
            self.rollback()
            self._conn.close()

    def backup_to(self, path: Path) -> None:
        """Copy the committed database into a new file at ``path`` (used when saving to a new folder)."""
        with self._lock:
            target = sqlite3.connect(str(path))
            try:
                self._conn.backup(target)
            finally:
                target.close()

    # --------------------------------------------------------------------------------- meta
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._begin()
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --------------------------------------------------------------------------------- writes
    def add_document(self, document: Document, chunks: Sequence[Chunk]) -> list[int]:
        """Store ``document`` and its chunks; return the new chunk ids (also set on the chunks)."""
        with self._lock:
            if self.has_document(document.id):
                raise InvalidInputError(
                    f"document id {document.id!r} is already in the index; use upsert to replace it or delete it first"
                )
            self._begin()
            self._conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?)",
                (document.id, document.text, json.dumps(document.metadata, ensure_ascii=False, default=str)),
            )
            ids = []
            for chunk in chunks:
                cursor = self._conn.execute(
                    'INSERT INTO chunks (doc_id, ordinal, start, "end", text, section) VALUES (?, ?, ?, ?, ?, ?)',
                    (document.id, chunk.ordinal, chunk.start, chunk.end, chunk.text, chunk.section),
                )
                chunk.id = int(cursor.lastrowid)
                ids.append(chunk.id)
            return ids

    def delete_document(self, doc_id: str) -> list[int]:
        """Remove a document and its chunks; return the removed chunk ids ([] when the id is unknown)."""
        with self._lock:
            ids = [r[0] for r in self._conn.execute("SELECT id FROM chunks WHERE doc_id = ?", (doc_id,))]
            if not ids and not self.has_document(doc_id):
                return []
            self._begin()
            self._conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            self._conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            return ids

    # --------------------------------------------------------------------------------- reads
    def has_document(self, doc_id: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM documents WHERE doc_id = ?", (doc_id,)).fetchone() is not None

    def document_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT doc_id FROM documents ORDER BY rowid")]

    def get_document(self, doc_id: str) -> Document | None:
        with self._lock:
            row = self._conn.execute("SELECT doc_id, text, metadata FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return Document(row[0], row[1], json.loads(row[2])) if row else None

    def document_metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        doc_ids = list(dict.fromkeys(doc_ids))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT doc_id, metadata FROM documents WHERE doc_id IN ({','.join('?' * len(doc_ids))})", doc_ids
            ).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """Chunks by id (unknown ids are left out), each carrying its document's metadata."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        with self._lock:
            rows = self._conn.execute(
                'SELECT c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.section, d.metadata '
                f"FROM chunks c JOIN documents d USING (doc_id) WHERE c.id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        return {r[0]: _chunk_from_row(r) for r in rows}

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]:
        """Chunks of one document with ``first <= ordinal <= last``, in order."""
        with self._lock:
            rows = self._conn.execute(
                'SELECT c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.section, d.metadata '
                "FROM chunks c JOIN documents d USING (doc_id) WHERE c.doc_id = ? AND c.ordinal >= ? AND c.ordinal <= ? "
                "ORDER BY c.ordinal",
                (doc_id, first, last if last is not None else 2**62),
            ).fetchall()
        return [_chunk_from_row(r) for r in rows]

    def iter_chunks(self, batch_size: int = 4096) -> Iterable[list[Chunk]]:
        """Every chunk, in id order, a batch at a time (for re-encoding)."""
        last = -1
        while True:
            with self._lock:
                rows = self._conn.execute(
                    'SELECT c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.section, d.metadata '
                    "FROM chunks c JOIN documents d USING (doc_id) WHERE c.id > ? ORDER BY c.id LIMIT ?",
                    (last, batch_size),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [_chunk_from_row(r) for r in rows]

    def chunk_ids_matching(self, filters: Mapping[str, Any]) -> np.ndarray:
        """Ids of chunks whose document metadata matches every filter (a value, or a list meaning 'any of').

        ``doc_id`` filters on the document id itself.
        """
        clauses, params = [], []
        for key, value in filters.items():
            if not key or not set(key) <= _FILTER_KEY_CHARS:
                raise InvalidInputError(f"filter key {key!r} must be letters, digits, '_', '-' or '.'")
            column = "d.doc_id" if key == "doc_id" else f"json_extract(d.metadata, '$.\"{key}\"')"
            values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
            if not values:
                raise InvalidInputError(f"filter {key!r} has an empty list of values; give at least one")
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(_sql_value(v) for v in values)
        where = " AND ".join(clauses) or "1"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT c.id FROM chunks c JOIN documents d USING (doc_id) WHERE {where}", params
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def document_span(self, doc_id: str, start: int, end: int) -> str:
        """``document.text[start:end]`` read without loading the whole document."""
        with self._lock:
            row = self._conn.execute(
                "SELECT substr(text, ?, ?) FROM documents WHERE doc_id = ?", (start + 1, max(0, end - start), doc_id)
            ).fetchone()
        return row[0] if row else ""

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        with self._lock:
            docs = self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            chunks = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # json_extract returns JSON true/false as 1/0
    if isinstance(value, (int, float, str)) or value is None:
        return value
    raise InvalidInputError(f"filter value {value!r} must be a string, number or boolean")


def _chunk_from_row(row: Sequence[Any]) -> Chunk:
    return Chunk(
        id=row[0], doc_id=row[1], ordinal=row[2], start=row[3], end=row[4], text=row[5], section=row[6],
        metadata=json.loads(row[7]) if len(row) > 7 else {},
    )
