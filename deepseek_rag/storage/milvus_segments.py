"""Segments on Milvus: one collection per immutable segment, versions that name them, an alias that follows.

With the Milvus backend (``IndexSettings.vector_store.backend == "milvus"``) an index is still a directory of
versions (``versions/``, ``CURRENT``: the manifest, the encoder fingerprint, the settings, the URI and the
collections), but a published segment's chunks and vectors live in a Milvus collection of its own,
``<collection>_<segment>`` (``sci_g000003``), written once — created, filled, flushed, built (the index type is
checked by building it: ``vectors/milvus.py``) — and from then on only read, exactly as a FAISS segment's files
are. The segment folder keeps ``milvus.json`` (the collection and its index) and the BM25 postings, which are a
cache: a folder without them rebuilds them from the collection's chunk texts.

Deletions stay markers pushed into every search (``id not in [...]``); merges write a new collection without the
deleted rows, as Milvus compacts. After each publish the alias ``<collection>`` points at the collection of the
version's largest segment — after ``deepseek-rag index`` (or ``--overwrite``, a blue-green rebuild) the whole
index — so Milvus tools see it by one name; ``manifest.json`` lists every collection of the version. Collections
no kept version names (older versions, merged-away segments, a crashed publish) are dropped by the writer's
garbage collection, and only those carrying this index's id (a collection property), never another index's.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderMismatchError, IndexFormatError, InvalidInputError
from ..sparse.bm25 import Postings, SparseConfig
from ..vectors.milvus import MilvusVectorStore
from ..vectors.milvus_collections import check_buildable, check_collection_name, read_identity
from ..vectors.milvus_connection import DEFAULT_TIMEOUT, milvus_client, normalize_uri, quiet_pymilvus
from ..vectors.milvus_spec import MilvusIndexSpec
from .layout import fsync_path
from .milvus_store import MilvusChunkStore, chunk_rows
from .segment import POSTINGS_DIR, Segment

logger = logging.getLogger(__name__)

MILVUS_FILE = "milvus.json"
_ROWS_PER_INSERT = 2000


@dataclass(frozen=True)
class MilvusTarget:
    """Where an index's segments go: the URI, the collection (alias) name, the index spec, this index's id."""

    uri: str
    collection: str
    spec: str = "auto"
    index_id: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        object.__setattr__(self, "uri", normalize_uri(self.uri))
        check_collection_name(self.collection)
        MilvusIndexSpec.parse(self.spec)

    @property
    def index_spec(self) -> MilvusIndexSpec:
        return MilvusIndexSpec.parse(self.spec)

    def resolved(self, n_vectors: int) -> MilvusTarget:
        """This target with ``auto`` resolved for ``n_vectors`` and an index id (new when it had none)."""
        spec = str(self.index_spec.resolve(n_vectors))
        return replace(self, spec=spec, index_id=self.index_id or uuid.uuid4().hex)

    def segment_collection(self, segment: str) -> str:
        return f"{self.collection}_{segment}"

    def record(self) -> dict[str, Any]:
        """The ``vectors`` part of a version record."""
        return {"backend": "milvus", "uri": self.uri, "collection": self.collection, "spec": self.spec,
                "index_id": self.index_id, "timeout": self.timeout}

    @classmethod
    def from_record(cls, vectors: Mapping[str, Any]) -> MilvusTarget:
        try:
            return cls(vectors["uri"], vectors["collection"], vectors.get("spec") or "auto",
                       vectors.get("index_id") or "", float(vectors.get("timeout") or DEFAULT_TIMEOUT))
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"the version record's Milvus target is damaged ({exc}); rebuild the index") from exc


def identity(target: MilvusTarget, segment: str, dim: int, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    return {"index_id": target.index_id, "segment": segment, "dim": dim, "fingerprint": dict(fingerprint)}


# ----------------------------------------------------------------------------------------------- checking
def check_target(target: MilvusTarget, dim: int, fingerprint: Mapping[str, Any]) -> None:
    """Before a build encodes anything: the target answers, builds the index type, and its collection name is free
    or this index's own. A collection of another dimension or encoder, or another index's, is a clear error."""
    client = milvus_client(target.uri, target.timeout)
    check_buildable(target.uri, target.index_spec, dim, timeout=target.timeout)
    names = client.list_collections(timeout=target.timeout)
    if target.collection in names:
        raise InvalidInputError(
            f"{target.uri} already has a collection named {target.collection!r} (not an alias this library made); "
            "choose another --collection"
        )
    owned = [n for n in names if n.startswith(target.collection + "_g")]
    aliased = _alias_target(client, target)
    for name in ([aliased] if aliased else []) + owned:
        found = read_identity(client, name, target.timeout)
        if not found:
            continue
        if int(found.get("dim", dim)) != dim or not _same_encoder(found.get("fingerprint") or {}, fingerprint):
            theirs = found.get("fingerprint") or {}
            raise EncoderMismatchError(
                f"Milvus collection {name!r} at {target.uri} holds {found.get('dim')}-d vectors of encoder "
                f"{theirs.get('model')!r} ({_fingerprint_text(theirs)}); this index's encoder makes {dim}-d vectors of "
                f"{fingerprint.get('model')!r} ({_fingerprint_text(fingerprint)}). Choose another --collection, or "
                "drop the old collections first"
            )
        if found.get("index_id") != target.index_id:
            raise InvalidInputError(
                f"Milvus collection {name!r} at {target.uri} belongs to another index directory (index id "
                f"{found.get('index_id')}); choose another --collection, or write into that directory "
                "(--out DIR --overwrite rebuilds it)"
            )


def _same_encoder(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    keys = [k for k in theirs if k not in ("model", "query_adapter")]
    return all(theirs.get(k) == ours.get(k) for k in keys)


def _fingerprint_text(fingerprint: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fingerprint.get(k)}" for k in ("base_fingerprint", "adapter", "dim") if k in fingerprint)


def _alias_target(client: Any, target: MilvusTarget) -> str | None:
    try:
        with quiet_pymilvus():
            return client.describe_alias(target.collection, timeout=target.timeout).get("collection_name") or None
    except Exception:  # no such alias
        return None


# ----------------------------------------------------------------------------------------------- writing
def write_segment(
    folder: Path, name: str, parts: Sequence[tuple[Segment, np.ndarray | None]], target: MilvusTarget,
    sparse: SparseConfig | None, dim: int, fingerprint: Mapping[str, Any],
) -> Segment:
    """Write the live rows of ``parts`` into the new collection of segment ``name`` and its folder; returns the
    segment opened from there. On failure the collection and the folder are removed."""
    import shutil

    rows_total = sum(len(s.chunk_ids) - (0 if excluded is None else int(np.isin(s.chunk_ids, excluded).sum()))
                     for s, excluded in parts)
    spec = target.index_spec
    store = MilvusVectorStore.create(target.uri, target.segment_collection(name), dim, spec, rows=rows_total,
                                     chunk_fields=True, identity=identity(target, name, dim, fingerprint),
                                     timeout=target.timeout)
    folder.mkdir(parents=True)
    try:
        for segment, excluded in parts:
            _copy_rows(store, segment, excluded)
        store.finish()
        postings = None
        if sparse is not None and all(s.postings is not None for s, _ in parts):
            postings = Postings.merge([
                (s.postings, None if excluded is None or not len(excluded)
                 else ~np.isin(np.asarray(s.postings.chunk_ids), excluded)) for s, excluded in parts
            ])
        entry = {"collection": store.collection, "index": {"type": store.index_spec.index_type,
                                                          "params": store.build_params}, "rows": len(store)}
        (folder / MILVUS_FILE).write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
        fsync_path(folder / MILVUS_FILE)
        if postings is not None:
            postings.save(folder / POSTINGS_DIR, sparse)
            for path in (folder / POSTINGS_DIR).iterdir():
                fsync_path(path)
            fsync_path(folder / POSTINGS_DIR)
        fsync_path(folder)
    except BaseException:
        with quiet_pymilvus():
            store.drop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return open_segment(folder, name, sparse, target, dim)


def _copy_rows(store: MilvusVectorStore, segment: Segment, excluded: np.ndarray | None) -> None:
    source = segment.store
    if isinstance(source, MilvusChunkStore):  # a merge: copy the rows as they are
        for batch in source.iter_rows(excluded):
            store.insert_rows([{**row, "id": int(row["id"])} for row in batch])
        return
    dead = set() if excluded is None else set(int(i) for i in excluded)
    pending: list[dict[str, Any]] = []
    for doc_id, first in source.document_ids():
        if first is None or first in dead:
            continue
        document = source.get_document(doc_id)
        chunks = source.chunks_of(doc_id)
        vectors = segment.vectors.fetch(np.asarray([c.id for c in chunks], dtype=np.int64))
        pending.extend(chunk_rows(document, chunks, vectors))
        if len(pending) >= _ROWS_PER_INSERT:
            store.insert_rows(pending)
            pending = []
    store.insert_rows(pending)


# ----------------------------------------------------------------------------------------------- reading
def open_segment(folder: Path, name: str, sparse: SparseConfig | None, target: MilvusTarget, dim: int) -> Segment:
    """A published Milvus segment: its collection attached for search, its postings opened (or rebuilt)."""
    from .rebuild import analyse_store

    entry = read_entry(folder)
    vectors = MilvusVectorStore.attach(target.uri, entry["collection"], dim, timeout=target.timeout)
    store = MilvusChunkStore(vectors)
    postings = None
    if sparse is not None:
        try:
            postings = Postings.open(folder / POSTINGS_DIR, sparse)
        except IndexFormatError as exc:
            logger.info("%s: BM25 postings not readable here (%s); rebuilding them from collection %s",
                        folder, exc, entry["collection"])
            postings = analyse_store(store, sparse)
    return Segment(name, store, vectors, postings, folder)


def read_entry(folder: Path) -> dict[str, Any]:
    try:
        entry = json.loads((folder / MILVUS_FILE).read_text(encoding="utf-8"))
        entry["collection"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{folder / MILVUS_FILE} is missing or damaged ({exc}); rebuild the index") from exc
    return entry


def is_milvus_segment(folder: Path) -> bool:
    return (folder / MILVUS_FILE).is_file()


# ----------------------------------------------------------------------------------------------- alias, garbage
def point_alias(target: MilvusTarget, collection: str) -> None:
    """Make the alias ``target.collection`` name ``collection`` (created, or moved from the previous one)."""
    client = milvus_client(target.uri, target.timeout)
    with quiet_pymilvus():
        try:
            client.alter_alias(collection, target.collection, timeout=target.timeout)
        except Exception:
            client.create_alias(collection, target.collection, timeout=target.timeout)


def drop_unnamed_collections(records: Sequence[Mapping[str, Any]], kept: Sequence[Mapping[str, Any]]) -> list[str]:
    """Drop the collections of this index (by its id) that no record in ``kept`` names; returns their names.

    ``records`` are every version record still readable (kept or about to go), so a base name used by an older
    version (before ``--overwrite`` with another ``--collection``) is swept too."""
    targets = {}
    for record in records:
        vectors = record.get("vectors") or {}
        if vectors.get("backend") == "milvus" and vectors.get("index_id"):
            target = MilvusTarget.from_record(vectors)
            targets[(target.uri, target.collection)] = target
    named = {s.get("collection") for r in kept for s in r.get("segments", []) if s.get("collection")}
    dropped = []
    for target in targets.values():
        try:
            client = milvus_client(target.uri, target.timeout)
            names = client.list_collections(timeout=target.timeout)
        except Exception as exc:  # an unreachable server: nothing is dropped on a guess
            logger.warning("cannot list collections at %s (%s); old collections are kept for now", target.uri, exc)
            continue
        for name in names:
            if not name.startswith(target.collection + "_g") or name in named:
                continue
            if read_identity(client, name, target.timeout).get("index_id") != target.index_id:
                continue  # another index's collection: never ours to drop
            with quiet_pymilvus():
                for alias in client.list_aliases(name, timeout=target.timeout).get("aliases", []):
                    client.drop_alias(alias, timeout=target.timeout)
                client.drop_collection(name, timeout=target.timeout)
            dropped.append(name)
    if dropped:
        logger.info("dropped %d Milvus collection(s) no kept version names: %s", len(dropped), ", ".join(dropped))
    return dropped
