"""The chunk store's reads behind metadata filters: which chunk ids a filter passes, a selectivity sample for the
filter planner (``filtering.py``), the metadata keys a filter can name, and documents holding non-numbers.

:class:`FilterReads` is the part of :class:`~deepseek_rag.storage.chunk_store.ChunkStore` that compiles filters to
SQL (``sql_filter.py``), falling back to the reference semantics (``Filter.matches``) for first-release stores
whose metadata SQLite's JSON functions refuse. Rows and connections are the store's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..vectors.filters import Filter
from .filter_columns import FilterColumns
from .sql_filter import filter_sql

logger = logging.getLogger(__name__)

SAMPLE_DOCUMENTS = 1000
"""Documents per segment that a filter's selectivity is measured on (±1.3 points at the 20% pre/post line)."""


class FilterReads:
    """Filtered reads for :class:`~deepseek_rag.storage.chunk_store.ChunkStore` (which provides ``_rows`` and
    ``_lock``, and sets ``_bare_nan``)."""

    def chunk_ids_matching(self, filters: Filter | Mapping[str, Any] | None, among: np.ndarray | None = None) -> np.ndarray:
        """Ids (ascending) of the chunks whose document passes ``filters`` (see ``vectors/filters.py``), among
        ``among`` when given (post-filtering a search's candidates)."""
        parsed = Filter.parse(filters)
        if parsed is None:
            return self.chunk_ids() if among is None else np.sort(np.asarray(among, dtype=np.int64))
        if self._has_bare_nan():
            return self._chunk_ids_matching_in_python(parsed, among)
        columns = self._filter_columns()
        passing = None if columns is None else columns.chunk_ids(parsed)
        if passing is not None:
            if among is None:
                return passing
            among = np.unique(np.asarray(among, dtype=np.int64))
            return among[np.isin(among, passing, assume_unique=True)]
        where, params = filter_sql(parsed)
        if among is not None:
            ids = [int(i) for i in among]
            if not ids:
                return np.empty(0, dtype=np.int64)
            where = f"c.id IN ({','.join('?' * len(ids))}) AND {where}"
            params = [*ids, *params]
        rows = self._rows(f"SELECT c.id FROM chunks c JOIN documents d USING (doc_id) WHERE {where} ORDER BY c.id", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def sample_share(self, filters: Filter, sample: int = SAMPLE_DOCUMENTS) -> tuple[int, int]:
        """(documents passing ``filters``, documents looked at) over a seeded random sample of the documents.

        Random, not evenly spaced: a catalogue written in a periodic order (category ``i % 20``, say) makes
        every 44th row the same few categories, and an evenly spaced sample then reads a 5% filter as 0% or 25%
        and a broad price range as narrow — the planner then fetches tens of thousands of ids from SQL."""
        if self._has_bare_nan():
            return 1, 1  # SQL cannot read this store's metadata: treat the filter as broad (post-filter in Python)
        columns = self._filter_columns()
        exact = None if columns is None else columns.share(filters)
        if exact is not None:
            return exact
        with self._lock:
            if getattr(self, "_sample_rowids", None) is None:
                rowids = np.fromiter((r[0] for r in self._rows("SELECT rowid FROM documents")), dtype=np.int64)
                if len(rowids) > sample:
                    rowids = np.sort(np.random.default_rng(len(rowids)).choice(rowids, sample, replace=False))
                self._sample_rowids = json.dumps(rowids.tolist()), len(rowids)
        rowids, looked = self._sample_rowids
        if not looked:
            return 0, 0
        where, params = filter_sql(filters)
        # CROSS JOIN keeps the sample as the outer loop: an index on a filtered key would otherwise lead and read
        # every document the filter passes
        hits = self._rows(f"SELECT COUNT(*) FROM json_each(?) s CROSS JOIN documents d ON d.rowid = s.value WHERE {where}",
                          [rowids, *params])[0][0]
        return int(hits), looked

    def text_values(self, key: str, chunk_ids: Sequence[int]) -> list[str | None] | None:
        """The text value of ``metadata[key]`` for each chunk's document, from the in-memory column of a published
        segment; None for a segment being written (read the chunks instead)."""
        columns = self._filter_columns()
        if columns is None or self._has_bare_nan():
            return None
        return columns.text_values(key, np.asarray(chunk_ids, dtype=np.int64))

    def warm_filter_columns(self, keys: Iterable[str]) -> None:
        """Read the columns of ``keys`` now (a new segment's declared ``filter_fields``, before readers see it)."""
        columns = self._filter_columns()
        if columns is not None and not self._has_bare_nan():
            columns.warm(keys)

    def _filter_columns(self) -> FilterColumns | None:
        """The in-memory columns of a published (read-only, so immutable) segment; None for one being written."""
        if not self.read_only:
            return None
        with self._lock:
            if getattr(self, "_columns", None) is None:
                self._columns = FilterColumns(self._column_rows, self._document_chunks)
            return self._columns

    def _column_rows(self, key: str) -> list[tuple[Any, Any]]:
        """(value, JSON type) of ``key`` for every document, in rowid order (``filter_columns.py``)."""
        if key == "doc_id":
            return self._rows("SELECT doc_id, 'text' FROM documents ORDER BY rowid")
        path = '$."' + key + '"'
        return self._rows("SELECT json_extract(metadata, ?), json_type(metadata, ?) FROM documents ORDER BY rowid",
                          (path, path))

    def _document_chunks(self) -> tuple[np.ndarray, np.ndarray]:
        """(every chunk id ascending, the rowid-order position of each one's document)."""
        rowids = np.fromiter((r[0] for r in self._rows("SELECT rowid FROM documents ORDER BY rowid")), dtype=np.int64)
        rows = self._rows("SELECT c.id, d.rowid FROM chunks c JOIN documents d USING (doc_id) ORDER BY c.id")
        chunk_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        owners = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return chunk_ids, np.searchsorted(rowids, owners)

    def non_numeric(self, key: str, limit: int = 5) -> tuple[int, list[str]]:
        """(how many documents hold a non-number under ``key``, the first ``limit`` of their ids)."""
        path = '$."' + key + '"'
        where = f"json_valid(metadata) AND json_type(metadata, '{path}') NOT IN ('integer', 'real', 'null')"
        count = self._rows(f"SELECT COUNT(*) FROM documents WHERE {where}")[0][0]
        ids = [r[0] for r in self._rows(f"SELECT doc_id FROM documents WHERE {where} LIMIT ?", (limit,))] if count else []
        return int(count), ids

    def _has_bare_nan(self) -> bool:
        """Whether a document's metadata holds JSON SQLite refuses: the first release wrote NaN and Infinity bare."""
        if self._bare_nan is None:
            found = self._rows("SELECT EXISTS (SELECT 1 FROM documents WHERE NOT json_valid(metadata))")
            self._bare_nan = bool(found[0][0])
        return self._bare_nan

    def _chunk_ids_matching_in_python(self, parsed: Filter, among: np.ndarray | None = None) -> np.ndarray:
        """The filter evaluated by its reference semantics (``Filter.matches``), for stores SQL cannot read."""
        matching = {doc_id for doc_id, text in self._rows("SELECT doc_id, metadata FROM documents")
                    if parsed.matches(json.loads(text), doc_id)}
        rows = self._rows("SELECT id, doc_id FROM chunks ORDER BY id")
        wanted = None if among is None else set(int(i) for i in among)
        ids = [chunk_id for chunk_id, doc_id in rows if doc_id in matching and (wanted is None or chunk_id in wanted)]
        return np.asarray(ids, dtype=np.int64)

    def metadata_keys(self, excluded_ids: np.ndarray | None = None) -> set[str]:
        """The top-level metadata keys of the stored documents, leaving out documents whose first chunk is in
        ``excluded_ids`` (the deleted ones); a document without chunks holds none."""
        excluded = json.dumps([int(i) for i in excluded_ids]) if excluded_ids is not None and len(excluded_ids) else "[]"
        live = "FROM documents d JOIN chunks c ON c.doc_id = d.doc_id AND c.ordinal = 0"
        unless_deleted = "c.id NOT IN (SELECT value FROM json_each(?))"
        rows = self._rows(
            f"SELECT DISTINCT j.key {live}, json_each(d.metadata) j WHERE json_valid(d.metadata) AND {unless_deleted}",
            (excluded,),
        )
        keys = {r[0] for r in rows}
        # The first release stored NaN as bare JSON NaN, which SQLite's JSON functions refuse: read those in Python.
        for (text,) in self._rows(f"SELECT d.metadata {live} WHERE NOT json_valid(d.metadata) AND {unless_deleted}",
                                  (excluded,)):
            keys.update(json.loads(text))
        return keys
