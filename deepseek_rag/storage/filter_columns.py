"""Metadata filters evaluated on columns held in memory: a segment's values of a key, read once, then numpy.

A segment's documents never change (a write makes a new segment; deletions are markers), so the values of a
filtered key can be read from SQLite once per segment and every later filter on that key is a vectorised
comparison over them: microseconds per thousand documents, where SQL reads and parses each document's JSON
again for every new filter (a broad range over 100k products: ~150 ms). The semantics are
:meth:`Filter.matches`' exactly (tests compare them): numbers and booleans compare as numbers, text only with
text, ranges only on numbers that are not booleans, a missing key matches ``$ne``/``$nin``/``$exists: false``.
``$contains`` (substrings, lists) is left to SQL: :func:`evaluate` then returns None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ..vectors.filters import Comparison, Filter, Group, Negation, Node

MISSING, NULL, NUMBER, BOOLEAN, TEXT, OTHER = range(6)
_KINDS = {None: MISSING, "null": NULL, "integer": NUMBER, "real": NUMBER, "true": BOOLEAN, "false": BOOLEAN,
          "text": TEXT, "array": OTHER, "object": OTHER}
MAX_COLUMNS = 32
"""Keys held per segment at most (the least recently used is dropped)."""


class Column:
    """One key's values over a segment's documents: kind, numeric value (numbers; booleans as 1/0), text."""

    def __init__(self, rows: Sequence[tuple[Any, Any]]) -> None:
        self.kind = np.fromiter((_KINDS[t] for _, t in rows), dtype=np.int8, count=len(rows))
        numeric = (self.kind == NUMBER) | (self.kind == BOOLEAN)
        self.number = np.full(len(rows), np.nan)
        self.number[numeric] = [float(v) for (v, _), keep in zip(rows, numeric) if keep]
        self._codes: dict[str, int] = {}  # each distinct text → a small integer: equality is an integer compare
        self.text = np.fromiter((self._codes.setdefault(v, len(self._codes)) if _KINDS[t] == TEXT else -1
                                 for v, t in rows), dtype=np.int64, count=len(rows))

    def texts(self) -> list[str]:
        """The distinct texts, by code."""
        return list(self._codes)

    def equal(self, value: Any) -> np.ndarray:
        """Where the stored value equals ``value`` as ``Filter.matches`` compares (``_equal``)."""
        if value is None:
            return self.kind == NULL
        if isinstance(value, (bool, int, float)):
            return ((self.kind == NUMBER) | (self.kind == BOOLEAN)) & (self.number == float(value))
        code = self._codes.get(value)
        return np.zeros(len(self.kind), dtype=bool) if code is None else self.text == code


class FilterColumns:
    """Columns of one immutable segment, read on first use through ``read(key) -> [(value, json_type)]`` (one
    row per document, in the order of ``document_chunks``' rows)."""

    def __init__(self, read: Callable[[str], Sequence[tuple[Any, Any]]],
                 document_chunks: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        self._read, self._document_chunks = read, document_chunks
        self._columns: dict[str, Column] = {}
        self._chunks: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def chunk_ids(self, filter_: Filter) -> np.ndarray | None:
        """Ids (ascending) of the chunks whose document passes ``filter_``; None when it needs SQL."""
        if not supported(filter_.root):
            return None
        mask = self._mask(filter_.root)
        chunk_ids, document_of_chunk = self._chunk_map()
        return chunk_ids[mask[document_of_chunk]]

    def share(self, filter_: Filter) -> tuple[int, int] | None:
        """(documents passing, documents) — exact; None when ``filter_`` needs SQL."""
        if not supported(filter_.root):
            return None
        mask = self._mask(filter_.root)
        return int(mask.sum()), len(mask)

    def text_values(self, key: str, chunk_ids: np.ndarray) -> list[str | None]:
        """The text value of ``key`` in the document of each of ``chunk_ids`` (None: missing, not text, or an id
        this segment does not hold)."""
        column = self._column(key)
        ids, document_of_chunk = self._chunk_map()
        wanted = np.asarray(chunk_ids, dtype=np.int64)
        position = np.minimum(np.searchsorted(ids, wanted), max(len(ids) - 1, 0))
        found = (ids[position] == wanted) if len(ids) else np.zeros(len(wanted), dtype=bool)
        codes = np.where(found, column.text[document_of_chunk[position]] if len(ids) else -1, -1)
        texts = column.texts()
        return [texts[c] if c >= 0 else None for c in codes.tolist()]

    def warm(self, keys: Iterable[str]) -> None:
        """Read ``keys``' columns (and the chunk map) now rather than at the first filter that needs them."""
        self._chunk_map()
        for key in keys:
            self._column(key)

    def _chunk_map(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._chunks is None:
                self._chunks = self._document_chunks()
            return self._chunks

    def _column(self, key: str) -> Column:
        with self._lock:
            column = self._columns.pop(key, None)
            if column is None:
                column = Column(self._read(key))
            self._columns[key] = column  # most recently used last
            while len(self._columns) > MAX_COLUMNS:
                self._columns.pop(next(iter(self._columns)))
            return column

    def _mask(self, node: Node) -> np.ndarray:
        if isinstance(node, Negation):
            return ~self._mask(node.child)
        if isinstance(node, Group):
            masks = [self._mask(child) for child in node.children]
            return np.logical_and.reduce(masks) if node.op == "$and" else np.logical_or.reduce(masks)
        column = self._column(node.key)
        op, value = node.op, node.value
        present = column.kind != MISSING
        if op == "$exists":
            return (present & (column.kind != NULL)) == value
        if op in ("$eq", "$in"):
            values = [value] if op == "$eq" else list(value)
            return np.logical_or.reduce([column.equal(v) for v in values]) if values else np.zeros(len(present), bool)
        if op in ("$ne", "$nin"):
            values = [value] if op == "$ne" else list(value)
            return ~np.logical_or.reduce([column.equal(v) for v in values]) if values else np.ones(len(present), bool)
        number = column.kind == NUMBER  # ranges: numbers only, never booleans, text or lists
        with np.errstate(invalid="ignore"):
            compared = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}[op](
                column.number, float(value))
        return number & compared


def supported(node: Node) -> bool:
    """Whether every condition of ``node`` can be evaluated on columns (all but ``$contains``)."""
    if isinstance(node, Comparison):
        return node.op != "$contains"
    if isinstance(node, Negation):
        return supported(node.child)
    return all(supported(child) for child in node.children)
