"""The Milvus backend of the ``VectorStore`` protocol: one Milvus collection, int64 ids chosen by the caller.

:class:`MilvusVectorStore` is a collection with an ``id`` primary key and an inner-product ``vector`` field —
and, for an index's segments, the chunk fields too (text, offsets, ordinal, section, document metadata: see
``storage/milvus_store.py``, which reads them). Scores are inner products, higher first. Milvus trains its own
codebooks when it builds an index, so ``train`` only checks its input.

Building is where Milvus can mislead: milvus-lite accepts an index type at ``create_collection`` /
``create_index`` that it cannot build (IVF_PQ, DISKANN, GPU types), searches unflushed rows by brute force, and
``describe_index`` echoes the requested type. Only building it shows the truth, so :meth:`finish` flushes,
releases and loads the collection (which builds the index, or fails) and waits until every row is indexed, and
:func:`~deepseek_rag.vectors.milvus_collections.check_buildable` does the same on a throw-away collection before
an index build encodes anything (``milvus_collections.py``: schema, names, identity). A type
the target cannot build is an :class:`~deepseek_rag.errors.IndexSpecError`, never a silent brute-force search.

Search knobs travel in ``params``: ``nprobe`` (IVF), ``ef`` or ``efSearch`` (HNSW). Filters: an
:class:`~deepseek_rag.vectors.base.IdFilter` (ids in / not in), or a
:class:`~deepseek_rag.vectors.base.MetadataFilter` compiled to a Milvus expression and evaluated inside the search.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexFormatError, IndexSpecError, InvalidInputError
from .arrays import as_ids, as_matrix, positive_int
from .base import Capabilities, IdFilter, MetadataFilter, search_params
from .milvus_collections import (
    IDENTITY_PROPERTY,
    VECTOR_FIELD,
    check_collection_name,
    collection_schema,
    index_params,
    read_identity,
    unbuildable,
)
from .milvus_connection import (
    DEFAULT_TIMEOUT,
    call_error,
    milvus_client,
    milvus_reason,
    normalize_uri,
    quiet_pymilvus,
)
from .milvus_filter import all_of, filter_expression, ids_expression
from .milvus_spec import SEARCH_KNOBS, MilvusIndexSpec, search_knobs

logger = logging.getLogger(__name__)

MAX_TOP_K = 16384  # Milvus's limit on limit (topk)
SEARCH_HITS_PER_CALL = 16384  # queries × limit asked of Milvus in one search call
_INSERT_ROWS = 1000
_READ_ROWS = 1000
_POINTER_VERSION = 1
CODEC_BYTES = {"FLAT": 4.0, "IVF_FLAT": 4.0, "IVF_SQ8": 1.0, "HNSW": 4.0, "HNSW_SQ": 1.0, "IVF_PQ": 0.125}
"""Bytes per dimension each index type keeps in memory (HNSW adds its graph: about 2·M·4 bytes a vector)."""


class MilvusVectorStore:
    """A Milvus collection of unit vectors under caller-chosen int64 ids (see the module docstring).

    Create one with :meth:`create` (a new collection) or :meth:`attach` (an existing one). Not thread-safe for
    writes; searches from many threads are fine (the client is).
    """

    def __init__(self, uri: str, collection: str, dim: int, spec: MilvusIndexSpec, build: Mapping[str, Any], *,
                 chunk_fields: bool, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.uri = normalize_uri(uri)
        self.collection = collection
        self._dim = positive_int(dim, "dim")
        self.index_spec = spec
        self.build_params = dict(build)
        self.chunk_fields = chunk_fields
        self.timeout = timeout
        self.client = milvus_client(self.uri, timeout)
        self._ids: np.ndarray | None = None
        self._loaded = True  # attach() loads; create() leaves the new collection released until first needed

    # ---------------------------------------------------------------- creating / attaching
    @classmethod
    def create(cls, uri: str, collection: str, dim: int, spec: MilvusIndexSpec | str, *, rows: int = 0,
               chunk_fields: bool = False, identity: Mapping[str, Any] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> MilvusVectorStore:
        """A new, empty collection ``collection`` with the index ``spec`` (``auto`` resolved for ``rows``)."""
        spec = MilvusIndexSpec.parse(spec) if isinstance(spec, str) else spec
        spec = spec.resolve(rows)
        check_collection_name(collection)
        build = spec.for_segment(rows)
        store = cls(uri, collection, dim, spec, build, chunk_fields=chunk_fields, timeout=timeout)
        client = store.client
        if client.has_collection(collection, timeout=timeout):
            raise InvalidInputError(f"Milvus collection {collection!r} exists already at {store.uri}; a store is "
                                    "written into a new collection (drop it, or choose another name)")
        schema = collection_schema(client, dim, chunk_fields)
        properties = {IDENTITY_PROPERTY: json.dumps(dict(identity or {}), sort_keys=True)}
        try:
            with quiet_pymilvus():  # create_index asks milvus-lite for a timestamp it does not serve, and logs it
                client.create_collection(collection, schema=schema, consistency_level="Strong", properties=properties,
                                         timeout=timeout)
                client.create_index(collection, index_params(client, spec, build), timeout=timeout)
                # left released while rows go in: milvus-lite then builds nothing in the background, and
                # finish() builds the index once, synchronously, when it loads the collection
                client.release_collection(collection, timeout=timeout)
        except Exception as exc:
            with quiet_pymilvus():
                store.drop()
            raise IndexSpecError(f"Milvus at {store.uri} refused index {spec} for collection {collection!r}: "
                                 f"{milvus_reason(exc)}") from None
        store._ids = np.empty(0, dtype=np.int64)
        store._loaded = False
        return store

    @classmethod
    def attach(cls, uri: str, collection: str, dim: int, *, timeout: float = DEFAULT_TIMEOUT) -> MilvusVectorStore:
        """An existing collection (its index type and parameters read from Milvus), loaded for search."""
        client = milvus_client(uri, timeout)
        if not client.has_collection(collection, timeout=timeout):
            raise IndexFormatError(f"Milvus collection {collection!r} is missing at {normalize_uri(uri)}: it was "
                                   "dropped, or the index names another server; rebuild the index")
        description = client.describe_collection(collection, timeout=timeout)
        vector = next((f for f in description.get("fields", []) if f.get("name") == VECTOR_FIELD), None)
        found_dim = int((vector or {}).get("params", {}).get("dim", 0))
        if found_dim != dim:
            raise IndexFormatError(
                f"Milvus collection {collection!r} at {normalize_uri(uri)} holds {found_dim}-d vectors, "
                f"the encoder makes {dim}-d ones; rebuild the index or open it with its own encoder"
            )
        index = client.describe_index(collection, VECTOR_FIELD, timeout=timeout) or {}
        spec = MilvusIndexSpec(str(index.get("index_type", "FLAT")))
        build = dict(index.get("params") or {})
        chunk_fields = any(f.get("name") == "doc_id" for f in description.get("fields", []))
        store = cls(uri, collection, dim, spec, build, chunk_fields=chunk_fields, timeout=timeout)
        try:
            client.load_collection(collection, timeout=timeout)
        except Exception as exc:
            raise IndexSpecError(f"Milvus at {store.uri} cannot load collection {collection!r}: {milvus_reason(exc)}") from None
        return store

    # ---------------------------------------------------------------- protocol properties
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> str:
        return str(MilvusIndexSpec(self.index_spec.index_type, self.build_params))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(delete=True, metadata_filter=self.chunk_fields, mmap=False, gpu=False)

    @property
    def is_trained(self) -> bool:
        return True  # Milvus trains what it needs when it builds the index

    @property
    def ids(self) -> np.ndarray:
        """The ids held, sorted (a copy)."""
        return self._known_ids().copy()

    def __len__(self) -> int:
        return int(len(self._known_ids()))

    def __repr__(self) -> str:
        return f"MilvusVectorStore({self.uri!r}, {self.collection!r}, dim={self._dim}, spec={self.spec!r})"

    def identity(self) -> dict[str, Any]:
        """What the writer recorded on the collection (index id, encoder fingerprint...)."""
        return read_identity(self.client, self.collection, self.timeout)

    def nbytes(self) -> int:
        """Estimated bytes of the index in Milvus's memory (vectors by codec; HNSW graph included)."""
        per_vector = CODEC_BYTES.get(self.index_spec.index_type, 4.0) * self._dim
        if self.index_spec.is_hnsw:
            per_vector += 2 * int(self.build_params.get("M", 16)) * 4
        return int(per_vector * len(self))

    def ram_nbytes(self) -> int:
        """Bytes a search needs resident in RAM — Milvus's, not this process's: the loaded collection is
        searched in memory there, so the same estimate as :meth:`nbytes`."""
        return self.nbytes()

    # ---------------------------------------------------------------- writing
    def train(self, sample: np.ndarray) -> None:
        """A no-op beyond checking the sample: Milvus trains IVF codebooks when it builds the index."""
        as_matrix(sample, self._dim, "training vectors")

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` under new ``ids`` (a vectors-only collection; segments use :meth:`insert_rows`)."""
        if self.chunk_fields:
            raise InvalidInputError(f"collection {self.collection!r} holds chunks; insert whole rows (insert_rows)")
        x = as_matrix(vectors, self._dim, "vectors")
        new_ids = as_ids(ids, expected=len(x))
        self._check_new(new_ids)
        self.insert_rows([{"id": int(i), VECTOR_FIELD: v} for i, v in zip(new_ids.tolist(), x)], checked=True)

    def insert_rows(self, rows: Sequence[Mapping[str, Any]], *, checked: bool = False) -> None:
        """Insert rows (dicts of every field) in batches; their ids must be new."""
        if not rows:
            return
        ids = np.asarray([r["id"] for r in rows], dtype=np.int64)
        if not checked:
            self._check_new(ids)
        for start in range(0, len(rows), _INSERT_ROWS):
            self._call("insert", self.client.insert, self.collection, list(rows[start : start + _INSERT_ROWS]))
        self._ids = np.union1d(self._known_ids(), ids)

    def remove(self, ids: np.ndarray) -> int:
        """Delete ``ids``; returns how many were present (absent ones are not an error)."""
        wanted = np.unique(as_ids(ids))
        present = wanted[np.isin(wanted, self._known_ids(), assume_unique=True)]
        if not len(present):
            return 0
        for start in range(0, len(present), _READ_ROWS):
            self._call("delete", self.client.delete, self.collection, ids=present[start : start + _READ_ROWS].tolist())
        self._ids = np.setdiff1d(self._known_ids(), present, assume_unique=True)
        return int(len(present))

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete every chunk of ``doc_ids`` (a chunk collection); returns the chunks deleted."""
        from .filters import Filter

        expression = filter_expression(Filter.parse({"doc_id": {"$in": list(doc_ids)}}))
        ids = self.query_ids(expression)
        return self.remove(ids)

    def finish(self, build_timeout: float | None = None) -> None:
        """Make every row durable and indexed, or fail: flush, release, load (Milvus builds the index now), then
        wait until the index covers every row. An index type the target cannot build is an IndexSpecError here."""
        self._call("release", self.client.release_collection, self.collection)
        self._loaded = False
        self._call("flush", self.client.flush, self.collection)
        failure = None
        for attempt in range(3):  # milvus-lite may still be writing an index file of an earlier background build
            try:
                with quiet_pymilvus():
                    self.client.load_collection(self.collection, timeout=build_timeout or max(self.timeout, 600.0))
                self._loaded = True
                break
            except Exception as exc:
                failure = exc
                if unbuildable(exc):
                    break
                time.sleep(0.5 * (attempt + 1))
        if not self._loaded:
            exc = failure
            raise IndexSpecError(
                f"Milvus at {self.uri} accepted index {self.spec} for collection {self.collection!r} but cannot build "
                f"it ({milvus_reason(exc)}); choose a type it builds (milvus-lite: FLAT, IVF_FLAT, IVF_SQ8, HNSW, HNSW_SQ)"
            ) from None
        deadline = time.monotonic() + (build_timeout or max(self.timeout, 600.0))
        while True:
            index = self.client.describe_index(self.collection, VECTOR_FIELD, timeout=self.timeout) or {}
            found = str(index.get("index_type", "")).upper()
            if found != self.index_spec.index_type:
                raise IndexSpecError(f"collection {self.collection!r} at {self.uri} reports index {found!r} where "
                                     f"{self.index_spec.index_type} was built; rebuild the index")
            state = str(index.get("state", "Finished"))
            if state.lower() == "failed":
                raise IndexSpecError(f"Milvus at {self.uri} failed to build {self.spec} on {self.collection!r}: "
                                     f"{index.get('index_state_fail_reason', '')}")
            if state.lower() == "finished" and int(index.get("pending_index_rows", 0) or 0) == 0:
                return
            if time.monotonic() > deadline:
                raise IndexSpecError(f"Milvus at {self.uri} is still building {self.spec} on {self.collection!r} "
                                     f"({index.get('indexed_rows')} of {index.get('total_rows')} rows); try again later")
            time.sleep(0.5)

    def drop(self) -> None:
        """Drop the collection (and every alias naming it)."""
        try:
            for alias in self.client.list_aliases(self.collection, timeout=self.timeout).get("aliases", []):
                self.client.drop_alias(alias, timeout=self.timeout)
        except Exception:  # no aliases, or the collection never existed
            pass
        if self.client.has_collection(self.collection, timeout=self.timeout):
            self.client.drop_collection(self.collection, timeout=self.timeout)
        self._ids = np.empty(0, dtype=np.int64)

    def save(self, path: str | Path) -> None:
        """Finish the collection and write a small pointer file at ``path`` that :meth:`open` reads."""
        self.finish()
        pointer = {"format_version": _POINTER_VERSION, "backend": "milvus", "uri": self.uri,
                   "collection": self.collection, "dim": self._dim}
        path = Path(path)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(pointer, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def open(cls, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT, **_: Any) -> MilvusVectorStore:
        """The store a pointer file written by :meth:`save` names."""
        try:
            pointer = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path} is not a readable Milvus pointer file ({exc})") from exc
        if not isinstance(pointer, dict) or pointer.get("format_version") != _POINTER_VERSION:
            raise IndexFormatError(f"{path} has an unknown Milvus pointer format; this library reads {_POINTER_VERSION}")
        return cls.attach(pointer["uri"], pointer["collection"], int(pointer["dim"]), timeout=timeout)

    # ---------------------------------------------------------------- searching
    def search(
        self, queries: np.ndarray, k: int, *, filter: IdFilter | MetadataFilter | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids), each (n, k); missing results are id -1, score -inf. ``filter`` restricts by id
        or by document metadata (evaluated by Milvus inside the search)."""
        k = positive_int(k, "k")
        knobs = search_params(params, SEARCH_KNOBS, "milvus")
        q = as_matrix(queries, self._dim, "queries", allow_1d=True)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        expression = self.filter_expression(filter)
        if expression is None:
            raise InvalidInputError("this filter cannot be evaluated by Milvus ($contains with % or _); resolve it to "
                                    "ids first (IdFilter)")
        available = len(self)
        if len(q) == 0 or available == 0 or expression == "false":
            return scores, ids
        self._ensure_loaded()
        limit = min(k, available)
        if limit > MAX_TOP_K:
            raise InvalidInputError(f"k={k} is more than Milvus returns in one search ({MAX_TOP_K}); ask for fewer")
        engine = search_knobs(self.index_spec, self.build_params, limit, knobs)
        # Ask for the id only: pymilvus 3 reads output_fields=[] as every field (text, vector, metadata), which
        # made a 300-query batch a 300 MB answer. Queries go in blocks of at most SEARCH_HITS_PER_CALL hits, so a
        # batch stays well inside gRPC's message limit and the per-call timeout.
        step = max(1, SEARCH_HITS_PER_CALL // limit)
        for first in range(0, len(q), step):
            found = self._call("search", self.client.search, self.collection, data=q[first:first + step].tolist(),
                               limit=limit, anns_field=VECTOR_FIELD, filter=expression,
                               search_params={"metric_type": "IP", "params": engine}, output_fields=["id"],
                               consistency_level="Strong")
            for row, hits in enumerate(found, start=first):
                for column, hit in enumerate(list(hits)[:k]):
                    ids[row, column] = int(hit["id"])
                    scores[row, column] = float(hit["distance"])
        return scores, ids

    def filter_expression(self, filter: IdFilter | MetadataFilter | None) -> str | None:
        """The Milvus expression of a search filter ("" for none; None when it cannot be written exactly)."""
        if filter is None:
            return ""
        if isinstance(filter, IdFilter):
            return ids_expression(filter.allowed, filter.excluded)
        if isinstance(filter, MetadataFilter):
            if not self.chunk_fields:
                raise InvalidInputError(f"collection {self.collection!r} holds no metadata; filter by id (IdFilter)")
            metadata = filter_expression(filter.filter)
            if metadata is None:
                return None
            ids = "" if filter.ids is None else ids_expression(filter.ids.allowed, filter.ids.excluded)
            return all_of(metadata, ids)
        raise InvalidInputError(f"filter must be an IdFilter or a MetadataFilter, got {type(filter).__name__}")

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (Milvus keeps the raw vectors), in the order given."""
        wanted = as_ids(ids)
        missing = wanted[~np.isin(wanted, self._known_ids())]
        if len(missing):
            raise InvalidInputError(f"ids not in the index: {missing[:5].tolist()}")
        out = np.zeros((len(wanted), self._dim), dtype=np.float32)
        self._ensure_loaded()
        position = {int(i): n for n, i in enumerate(wanted.tolist())}
        for start in range(0, len(wanted), _READ_ROWS):
            part = wanted[start : start + _READ_ROWS].tolist()
            for row in self._call("get", self.client.get, self.collection, ids=part, output_fields=[VECTOR_FIELD]):
                out[position[int(row["id"])]] = np.asarray(row[VECTOR_FIELD], dtype=np.float32)
        return out

    # ---------------------------------------------------------------- scalar reads (the chunk store's)
    def query(self, expression: str, fields: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
        """Rows matching ``expression`` (at most ``limit``, else all, read in batches)."""
        self._ensure_loaded()
        if limit is not None and limit <= MAX_TOP_K:
            return list(self._call("query", self.client.query, self.collection, filter=expression or "id >= 0",
                                   output_fields=list(fields), limit=limit, consistency_level="Strong"))
        rows: list[dict[str, Any]] = []
        for batch in self.iterate(expression, fields):
            rows.extend(batch)
            if limit is not None and len(rows) >= limit:
                return rows[:limit]
        return rows

    def iterate(self, expression: str, fields: Sequence[str], batch_size: int = _READ_ROWS) -> Iterator[list[dict[str, Any]]]:
        """Rows matching ``expression`` a batch at a time (primary-key order)."""
        self._ensure_loaded()
        with quiet_pymilvus():  # pymilvus warns that a lite server reports no MVCC timestamp
            iterator = self._call("query_iterator", self.client.query_iterator, self.collection, batch_size=batch_size,
                                  filter=expression or "id >= 0", output_fields=list(fields))
        try:
            while True:
                with quiet_pymilvus():
                    batch = iterator.next()
                if not batch:
                    return
                yield list(batch)
        finally:
            iterator.close()

    def query_ids(self, expression: str) -> np.ndarray:
        """Sorted ids of the rows matching ``expression``."""
        ids = [int(r["id"]) for batch in self.iterate(expression, ["id"]) for r in batch]
        return np.unique(np.asarray(ids, dtype=np.int64))

    def count(self, expression: str = "") -> int:
        self._ensure_loaded()
        rows = self._call("query", self.client.query, self.collection, filter=expression,
                          output_fields=["count(*)"], consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    # ---------------------------------------------------------------- helpers
    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._call("load", self.client.load_collection, self.collection)
            self._loaded = True

    def _known_ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = self.query_ids("")
        return self._ids

    def _check_new(self, ids: np.ndarray) -> None:
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise InvalidInputError(f"duplicate ids in one add: {unique[counts > 1][:5].tolist()}; ids must be unique")
        clash = ids[np.isin(ids, self._known_ids())]
        if len(clash):
            raise InvalidInputError(f"ids already in the index: {clash[:5].tolist()}; remove them first to replace their vectors")

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with quiet_pymilvus():
                return method(*args, timeout=self.timeout, **kwargs)
        except Exception as exc:
            error = call_error(exc, what, self.uri, self.collection, self.timeout)
            if error is None:
                raise
            raise error from None
