"""The chunks of a Milvus-backed segment, stored as fields of its collection and read with scalar queries.

Each row of a segment's collection is one chunk: its vector, ``doc_id``, ``ordinal``, ``char_start``/``char_end``,
``text``, ``section`` and the document's ``metadata`` (JSON, on every chunk, as LlamaIndex's Milvus store keeps
it), plus the metadata split by type for exact filters (``vectors/milvus_filter.py``) and the text between chunks:
``gap_before`` (what lies between the previous chunk's end and this chunk's start) and ``tail`` (after the last
chunk). So a document's text is its chunks and gaps stitched together — document spans and neighbour windows
are scalar queries, and several service replicas read one source of truth.

:class:`MilvusChunkStore` implements the :class:`~deepseek_rag.storage.base.ChunkStoreProtocol` reads; rows are
written once, by ``milvus_segments.py``, with :func:`chunk_rows`. For a segment up to ``DOC_MAP_MAX_CHUNKS``
chunks the document map (doc id → chunk ids) and first-chunk metadata are read once and cached (about 100 bytes a
chunk); larger segments query Milvus each time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .. import jsonable
from ..documents import Chunk, Document
from ..errors import InvalidInputError
from ..vectors.filters import Filter
from ..vectors.milvus import MilvusVectorStore
from ..vectors.milvus_collections import MAX_KEYS, VARCHAR_MAX, VECTOR_FIELD
from ..vectors.milvus_filter import all_of, filter_expression, ids_expression, literal

DOC_MAP_MAX_CHUNKS = 1_000_000
CHUNK_FIELDS = ["id", "doc_id", "ordinal", "char_start", "char_end", "text", "section", "metadata"]
SPAN_FIELDS = ["ordinal", "char_start", "char_end", "text", "gap_before", "tail"]
ROW_FIELDS = [*CHUNK_FIELDS, "meta_num", "meta_bool", "meta_str", "meta_list", "null_keys", "gap_before", "tail"]
MAX_JSON_BYTES = 65536


def chunk_rows(document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> list[dict[str, Any]]:
    """The collection rows of one document's chunks (with ids set) and their vectors."""
    metadata = json.loads(jsonable.dumps(document.metadata))  # NaN → "nan", as the SQLite store writes it
    encoded = json.dumps(metadata, ensure_ascii=False)
    if len(encoded.encode("utf-8")) > MAX_JSON_BYTES:
        raise InvalidInputError(f"document {document.id!r}: its metadata is {len(encoded.encode()):,} bytes of JSON, "
                                f"more than a Milvus JSON field holds ({MAX_JSON_BYTES:,}); store less metadata")
    typed = typed_metadata(metadata)
    if len(typed["null_keys"]) > MAX_KEYS:
        raise InvalidInputError(f"document {document.id!r} has more than {MAX_KEYS} metadata keys whose value is null")
    _check_text(document, "id", document.id)
    rows, covered = [], 0
    text = document.text
    for position, (chunk, vector) in enumerate(zip(chunks, vectors)):
        gap = text[covered : chunk.start] if chunk.start > covered else ""
        covered = max(covered, chunk.end)
        tail = text[covered:] if position == len(chunks) - 1 else ""
        for what, value in (("chunk text", chunk.text), ("section", chunk.section or ""), ("text between chunks", gap),
                            ("text after the last chunk", tail)):
            _check_text(document, what, value)
        rows.append({
            "id": int(chunk.id), VECTOR_FIELD: np.asarray(vector, dtype=np.float32), "doc_id": document.id,
            "ordinal": int(chunk.ordinal), "char_start": int(chunk.start), "char_end": int(chunk.end),
            "text": chunk.text, "section": chunk.section, "metadata": metadata, **typed, "gap_before": gap, "tail": tail,
        })
    return rows


def typed_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata split by type, as ``vectors/milvus_filter.py`` compares it (never across types)."""
    return {
        "meta_num": {k: v for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "meta_bool": {k: int(v) for k, v in metadata.items() if isinstance(v, bool)},
        "meta_str": {k: v for k, v in metadata.items() if isinstance(v, str)},
        "meta_list": {k: v for k, v in metadata.items() if isinstance(v, list)},
        "null_keys": [k for k, v in metadata.items() if v is None],
    }


def _check_text(document: Document, what: str, value: str) -> None:
    size = len(value.encode("utf-8"))
    if size > VARCHAR_MAX:
        hint = (" (chunking='none' leaves the text after the first chunk outside it; index with chunking='token')"
                if what.startswith("text after") else "")
        raise InvalidInputError(f"document {document.id!r}: its {what} is {size:,} bytes, more than a Milvus VARCHAR "
                                f"field holds ({VARCHAR_MAX:,}){hint}")


class MilvusChunkStore:
    """The chunk fields of one segment collection (see the module docstring). Read-only."""

    read_only = True

    def __init__(self, vectors: MilvusVectorStore) -> None:
        self.vectors = vectors
        self.path = None
        self._lock = threading.Lock()
        self._doc_map: dict[str, list[int]] | None = None
        self._documents: list[tuple[str, int]] | None = None
        self._first_metadata: list[tuple[int, str, dict[str, Any]]] | None = None
        self._counts: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"MilvusChunkStore({self.vectors.collection!r})"

    # ----------------------------------------------------------------------------------- documents
    def counts(self) -> tuple[int, int]:
        if self._counts is None:
            self._counts = (self.vectors.count("ordinal == 0"), len(self.vectors))
        return self._counts

    def chunk_ids(self) -> np.ndarray:
        return self.vectors.ids

    def _small(self) -> bool:
        return len(self.vectors) <= DOC_MAP_MAX_CHUNKS

    def _map(self) -> dict[str, list[int]]:
        with self._lock:
            if self._doc_map is None:
                rows = [r for batch in self.vectors.iterate("", ["id", "doc_id", "ordinal"]) for r in batch]
                rows.sort(key=lambda r: (r["doc_id"], r["ordinal"]))
                doc_map: dict[str, list[int]] = {}
                for row in rows:
                    doc_map.setdefault(row["doc_id"], []).append(int(row["id"]))
                self._doc_map = doc_map
            return self._doc_map

    def chunk_ids_of(self, doc_id: str) -> list[int]:
        if self._small():
            return list(self._map().get(doc_id, []))
        rows = self.vectors.query(f"doc_id == {literal(doc_id)}", ["id", "ordinal"])
        return [int(r["id"]) for r in sorted(rows, key=lambda r: r["ordinal"])]

    def has_document(self, doc_id: str) -> bool:
        return bool(self.chunk_ids_of(doc_id))

    def most_chunks_per_document(self) -> int | None:
        """From the cached document map; None for a segment too large to map (the caller then assumes any)."""
        if not self._small():
            return None
        return max((len(ids) for ids in self._map().values()), default=0)

    def long_document_chunk_ids(self, min_chunks: int) -> np.ndarray | None:
        """From the cached document map; None for a segment too large to map."""
        if not self._small():
            return None
        ids = [i for chunk_ids in self._map().values() if len(chunk_ids) >= min_chunks for i in chunk_ids]
        return np.sort(np.asarray(ids, dtype=np.int64))

    def document_ids(self) -> list[tuple[str, int]]:
        if self._documents is None:
            rows = [r for batch in self.vectors.iterate("ordinal == 0", ["id", "doc_id"]) for r in batch]
            self._documents = sorted(((r["doc_id"], int(r["id"])) for r in rows), key=lambda pair: pair[1])
        return list(self._documents)

    def _metadata_rows(self) -> list[tuple[int, str, dict[str, Any]]]:
        """(first chunk id, doc id, metadata) of every document."""
        if self._first_metadata is not None:
            return self._first_metadata
        rows = [(int(r["id"]), r["doc_id"], r["metadata"] or {})
                for batch in self.vectors.iterate("ordinal == 0", ["id", "doc_id", "metadata"]) for r in batch]
        if self._small():
            self._first_metadata = rows
        return rows

    def get_document(self, doc_id: str) -> Document | None:
        rows = self.vectors.query(f"doc_id == {literal(doc_id)}", [*SPAN_FIELDS, "metadata"])
        if not rows:
            return None
        rows.sort(key=lambda r: r["ordinal"])
        return Document(doc_id, _stitch(rows)[1], dict(rows[0]["metadata"] or {}))

    def document_metadata(self, doc_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        doc_ids = list(dict.fromkeys(doc_ids))
        if not doc_ids:
            return {}
        rows = self.vectors.query(all_of(_doc_in(doc_ids), "ordinal == 0"), ["doc_id", "metadata"])
        return {r["doc_id"]: dict(r["metadata"] or {}) for r in rows}

    def metadata_keys(self, excluded_ids: np.ndarray | None = None) -> set[str]:
        excluded = set(int(i) for i in excluded_ids) if excluded_ids is not None and len(excluded_ids) else set()
        keys: set[str] = set()
        for first, _, metadata in self._metadata_rows():
            if first not in excluded:
                keys.update(metadata)
        return keys

    def document_span(self, doc_id: str, start: int, end: int) -> str:
        """``document.text[start:end]``, stitched from the chunks (and the text between them) covering it."""
        if end <= start:
            return ""
        where = f"doc_id == {literal(doc_id)}"
        rows = self.vectors.query(all_of(where, f"char_end > {int(start)}", f"char_start < {int(end)}"), SPAN_FIELDS)
        if not rows:  # the span lies in a gap, or after the last chunk: read from the chunk after it
            rows = self.vectors.query(all_of(where, f"char_start >= {int(end)}"), SPAN_FIELDS, limit=1)
            if not rows:
                rows = self.vectors.query(where, SPAN_FIELDS)
                rows = sorted(rows, key=lambda r: r["ordinal"])[-1:]
        rows.sort(key=lambda r: r["ordinal"])
        origin, covered_end, _ = _extent(rows)
        if end > covered_end and not rows[-1]["tail"]:  # the rest is the next chunk's gap_before
            after = self.vectors.query(all_of(where, f"ordinal == {int(rows[-1]['ordinal']) + 1}"), SPAN_FIELDS, limit=1)
            rows += after
        origin, text = _stitch(rows)
        return text[max(0, start - origin) : max(0, end - origin)]

    # ----------------------------------------------------------------------------------- chunks
    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids]
        found: dict[int, Chunk] = {}
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            for row in self.vectors.query(ids_expression(part), CHUNK_FIELDS, limit=len(part)):
                found[int(row["id"])] = _chunk(row)
        return found

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]:
        where = all_of(f"doc_id == {literal(doc_id)}", f"ordinal >= {int(first)}",
                       f"ordinal <= {int(last)}" if last is not None else "")
        return [_chunk(r) for r in sorted(self.vectors.query(where, CHUNK_FIELDS), key=lambda r: r["ordinal"])]

    def iter_chunks(self, batch_size: int = 4096) -> Iterator[list[Chunk]]:
        """Every stored chunk, a batch at a time (ids ascending within a batch)."""
        for batch in self.vectors.iterate("", CHUNK_FIELDS, batch_size=min(batch_size, 4096)):
            yield sorted((_chunk(r) for r in batch), key=lambda c: c.id)

    def iter_rows(self, excluded: np.ndarray | None = None, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every row with all fields and its vector (a merge copies them), deleted ones left out."""
        where = ids_expression(excluded=excluded) if excluded is not None and len(excluded) else ""
        yield from self.vectors.iterate(where, [*ROW_FIELDS, VECTOR_FIELD], batch_size=batch_size)

    # ----------------------------------------------------------------------------------- filters
    def chunk_ids_matching(self, filters: Filter | Mapping[str, Any] | None, among: np.ndarray | None = None) -> np.ndarray:
        parsed = Filter.parse(filters)
        among_expression = "" if among is None else ids_expression(np.asarray(among, dtype=np.int64))
        if parsed is None:
            return self.chunk_ids() if among is None else np.sort(np.asarray(among, dtype=np.int64))
        expression = filter_expression(parsed)
        if expression is None:  # not expressible in Milvus: the reference semantics on the documents' metadata
            passing = [doc_id for _, doc_id, metadata in self._metadata_rows() if parsed.matches(metadata, doc_id)]
            ids = [i for doc_id in passing for i in self.chunk_ids_of(doc_id)]
            found = np.unique(np.asarray(ids, dtype=np.int64))
            return found if among is None else found[np.isin(found, among)]
        if among is not None and not len(among):
            return np.empty(0, dtype=np.int64)
        return self.vectors.query_ids(all_of(expression, among_expression))

    def sample_share(self, filters: Filter, sample: int = 2000) -> tuple[int, int]:
        expression = filter_expression(filters)
        documents = self.counts()[0]
        if expression is None:
            return 1, 1  # evaluated in Python: treat as broad
        return self.vectors.count(all_of("ordinal == 0", expression)), documents

    def non_numeric(self, key: str, limit: int = 5) -> tuple[int, list[str]]:
        found = [doc_id for _, doc_id, metadata in self._metadata_rows()
                 if key in metadata and metadata[key] is not None
                 and (isinstance(metadata[key], bool) or not isinstance(metadata[key], (int, float)))]
        return len(found), found[:limit]

    def close(self) -> None:
        """Nothing to close: the client is shared by every segment of this process."""


def _doc_in(doc_ids: Sequence[str]) -> str:
    return f"doc_id in [{', '.join(literal(d) for d in doc_ids)}]"


def _chunk(row: Mapping[str, Any]) -> Chunk:
    return Chunk(id=int(row["id"]), doc_id=row["doc_id"], ordinal=int(row["ordinal"]), start=int(row["char_start"]),
                 end=int(row["char_end"]), text=row["text"], section=row.get("section"),
                 metadata=dict(row.get("metadata") or {}))


def _extent(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int, int]:
    """(where the first row's gap starts, the furthest chunk end, rows) of consecutive chunk rows."""
    first = rows[0]
    origin = int(first["char_start"]) - len(first["gap_before"])
    return origin, max(int(r["char_end"]) for r in rows), len(rows)


def _stitch(rows: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """(offset of the text's first character in the document, the text of consecutive chunk rows: gaps,
    the new part of each chunk, and the tail after the last chunk)."""
    origin = int(rows[0]["char_start"]) - len(rows[0]["gap_before"])
    parts, covered = [], origin
    for row in rows:
        start, end = int(row["char_start"]), int(row["char_end"])
        if start > covered:
            parts.append(row["gap_before"][len(row["gap_before"]) - (start - covered):])
            covered = start
        if end > covered:
            parts.append(row["text"][covered - start:])
            covered = end
        parts.append(row["tail"])
        covered += len(row["tail"])
    return origin, "".join(parts)
