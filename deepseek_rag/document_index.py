"""DocumentIndex: documents in, chunks stored, vectors indexed — built, changed, published and opened as one.

The coordinator of the stages: text preparation (``ingest/``), the dual encoder (``encoding/``), segments of
chunks + vectors + postings (``storage/segment.py``) and the versioned directory (``storage/``). Writes go
through it; reads get an immutable :class:`~deepseek_rag.storage.snapshot.Snapshot`. Its directory side (writer
lock, save, load, refresh) is ``index_publishing.py``; whether it has vectors (``dense="auto"``, ``densify``) is
``index_dense.py``.

Concurrency: chunking and encoding run outside any lock. A change builds a new in-memory segment (or new
deletion markers), then swaps in a new snapshot with one assignment under the writer's mutex, so searches
never wait for a writer and always see one consistent state. In a directory, the first change takes the
writer lock (``storage/lock.py``; a second writer is told who holds it), moving first to the newest
published version if another writer published since this one was opened; ``save()`` publishes a new
version and lets the lock go. A change that fails leaves the index exactly as it was, in memory and on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .documents import Chunk, Document
from .encoding.dual_encoder import DualEncoder
from .errors import DocumentNotFoundError, InvalidInputError, ReadOnlyIndexError
from .index_dense import DenseSide
from .index_publishing import Publishing
from .ingest.preparation import PreparedBatch, chunk_for_encoder, prepare_documents, with_header
from .settings import IndexSettings
from .sparse.bm25 import SparseConfig
from .storage import rebuild
from .storage.layout import CURRENT_NAME, FORMAT_VERSION, directory_bytes
from .storage.lock import WriterLock
from .storage.segment import Segment
from .storage.snapshot import SegmentState, Snapshot, VectorsSummary, with_deleted
from .storage.unchanged_chunks import encode_changed
from .vectors.calibration import VectorSearchSettings, calibrate_template
from .vectors.faiss_store import FaissVectorStore

logger = logging.getLogger(__name__)

MAX_PENDING_SEGMENTS = 8
"""Unsaved in-memory segments are merged into one past this count, so searches visit few segments."""


class DocumentIndex(Publishing, DenseSide):
    """Chunked documents with their vectors: build, add, upsert, delete, save (publish), load.

    >>> index = DocumentIndex.build(documents)            # bundled MiniLM, spec chosen by size
    >>> index.save("contracts.idx")
    >>> index = DocumentIndex.load("contracts.idx")
    >>> hits = index.as_retriever().retrieve("who may terminate the agreement?")
    """

    def __init__(
        self,
        encoder: DualEncoder | None = None,
        settings: IndexSettings | None = None,
        *,
        lock_timeout: float = 0.0,
        _snapshot: Snapshot | None = None,
        _path: Path | None = None,
        _writable: bool = True,
    ) -> None:
        self.encoder = encoder or DualEncoder()
        self.settings = settings or IndexSettings()
        self.path = _path
        self.lock_timeout = lock_timeout
        self._writable = _writable
        self._snapshot = _snapshot or Snapshot(
            (), dim=self.encoder.dim, template=self._new_template(),
            sparse=self.settings.sparse if self.settings.sparse.enabled else None, dense=self.settings.dense != "off",
            milvus=self._milvus_target(None),
        )
        self._checked_target: Any = None
        self._mutex = threading.RLock()
        self._writer_lock: WriterLock | None = None
        self._changed = False
        self._pending_names = 0
        self.dense_note: str | None = None
        """Why ``dense="auto"`` (or :meth:`densify`) decided as it did, for the CLI to print (None: nothing to say)."""

    # ------------------------------------------------------------------------------------ reading
    def snapshot(self) -> Snapshot:
        """The current immutable state; searches on it are unaffected by later changes."""
        return self._snapshot

    @contextlib.contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """The snapshot one search runs on (the ``SearchableIndex`` protocol of ``retrieval/``)."""
        yield self._snapshot

    @property
    def store(self) -> Snapshot:
        """Chunk and document reads (``get_chunks``, ``chunks_of``, ``iter_chunks``...) on the current snapshot."""
        return self._snapshot

    @property
    def vectors(self) -> VectorsSummary:
        return VectorsSummary(self._snapshot)

    @property
    def sparse(self):  # -> SparseIndex
        return self._snapshot.sparse if self.has_sparse else None

    @property
    def has_dense(self) -> bool:
        """False for a lexical-only index (``settings.dense="off"``): BM25 only, searched in sparse mode."""
        return self._snapshot.dense

    @property
    def has_sparse(self) -> bool:
        """True when this index keeps a BM25 side (``settings.sparse.enabled``)."""
        return self._snapshot.has_sparse

    @property
    def version(self) -> int | None:
        """The published version this index shows (None: never published, or changed since)."""
        return None if self._changed else self._snapshot.version

    def search_vectors(self, query_vectors: np.ndarray, k: int, *, filters: Any = None, nprobe: int | None = None):
        """Vector search with an optional metadata filter → (scores, chunk ids), both (n, k)."""
        return self._snapshot.search_vectors(query_vectors, k, filters=filters, nprobe=nprobe)

    def search_sparse(self, queries: Any, k: int, *, filters: Any = None):
        """BM25 search with an optional metadata filter → (scores, chunk ids), both (n, k)."""
        return self._snapshot.search_sparse(queries, k, filters=filters)

    def as_retriever(self, **options: Any):  # -> Retriever
        """A :class:`~deepseek_rag.retrieval.retriever.Retriever` over this index."""
        from .retrieval.retriever import Retriever

        return Retriever(self, **options)

    # ------------------------------------------------------------------------------------ text preparation
    def chunk(self, document: Document) -> list[Chunk]:
        """Cut one document into chunks that fit the encoder with their header and prefix."""
        return chunk_for_encoder(document, self.encoder, self.settings.chunking, self.settings.contextual_headers)

    def embedding_text(self, chunk: Chunk, title: str | None) -> str:
        """The text the encoder reads for ``chunk``: its header (when enabled) and its text."""
        return with_header(chunk.text, title, chunk.section, self.settings.contextual_headers)

    def sparse_text(self, chunk: Chunk, title: str | None) -> str:
        """The text the BM25 side analyses for ``chunk``."""
        return with_header(chunk.text, title, chunk.section, self.settings.sparse.headers)

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        documents: Iterable[Document],
        encoder: DualEncoder | None = None,
        settings: IndexSettings | None = None,
        *,
        progress: bool | None = None,
        **setting_overrides: Any,
    ) -> DocumentIndex:
        """Chunk, encode and index ``documents`` in memory; call :meth:`save` to write a directory."""
        if setting_overrides:
            settings = IndexSettings.from_dict({**(settings or IndexSettings()).to_dict(), **setting_overrides})
        index = cls(encoder, settings)
        index.add_documents(documents, progress=progress)
        return index

    def _prepare(self, documents: Iterable[Document], progress: bool | None) -> tuple[PreparedBatch, np.ndarray | None]:
        self._check_writable()
        batch = prepare_documents(list(documents), self.encoder, self.settings)
        if self.settings.dense == "auto" and batch.documents:
            self._decide_dense(batch.embedding_texts)
        if not self._snapshot.dense:
            return batch, None  # a lexical-only index: nothing to encode
        # a replaced document's unchanged chunks keep their vectors; only new or edited text is encoded
        return batch, encode_changed(self._snapshot, batch, self.settings.contextual_headers,
                                     lambda texts: self.encoder.encode_documents(texts, progress=progress), self.encoder.dim)

    def add_documents(self, documents: Iterable[Document], *, progress: bool | None = None) -> int:
        """Chunk, encode and add new documents; an id already in the index is an error. Returns chunks added."""
        batch, vectors = self._prepare(documents, progress)
        return self.add_prepared(batch, vectors)

    def add_prepared(self, batch: PreparedBatch, vectors: np.ndarray | None) -> int:
        """Add documents chunked and encoded elsewhere — on a Dask cluster (``ingest/distributed.py``) — with this
        index's encoder and settings; the same checks as :meth:`add_documents`. ``vectors`` is None for a
        lexical-only index (and only then). Returns chunks added."""
        self._check_writable()
        if vectors is None and self._snapshot.dense and batch.chunk_count:
            raise InvalidInputError("this index holds vectors: give one vector per chunk (encode the batch with its encoder)")
        if vectors is not None and not self._snapshot.dense:
            raise InvalidInputError("this index is lexical-only (dense='off'): add its chunks without vectors, or densify it")
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32)
        if vectors is not None and batch.chunk_count and vectors.shape != (batch.chunk_count, self.encoder.dim):
            raise InvalidInputError(f"{vectors.shape} vectors for {batch.chunk_count} chunks of {self.encoder.dim} "
                                    "dimensions; prepare and encode the batch with this index's encoder")
        with self._writing():
            for doc in batch.documents:
                if self._snapshot.has_document(doc.id):
                    raise InvalidInputError(f"document id {doc.id!r} is already in the index; use upsert_documents to replace it")
            self._swap(self._with_batch(self._snapshot, batch, vectors))
        return batch.chunk_count

    def upsert_documents(self, documents: Iterable[Document], *, progress: bool | None = None) -> int:
        """Add documents, replacing any already stored under the same id. Returns chunks added."""
        batch, vectors = self._prepare(documents, progress)
        with self._writing():
            snapshot, _ = self._without(self._snapshot, [d.id for d in batch.documents])
            self._swap(self._with_batch(snapshot, batch, vectors))
        return batch.chunk_count

    def delete_documents(self, doc_ids: Iterable[str] | str, *, missing_ok: bool = False) -> int:
        """Remove documents and their chunks; an unknown id is an error unless ``missing_ok``. Returns chunks removed."""
        doc_ids = list(dict.fromkeys([doc_ids] if isinstance(doc_ids, str) else doc_ids))
        self._check_writable()
        with self._writing():
            unknown = [d for d in doc_ids if not self._snapshot.has_document(d)]
            if unknown and not missing_ok:
                raise DocumentNotFoundError(
                    f"no document with id {unknown[0]!r} in the index"
                    + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                    + "; `deepseek-rag info DIR --ids` lists the ids"
                )
            snapshot, removed = self._without(self._snapshot, doc_ids)
            if removed:
                self._swap(snapshot)
        return removed

    def _with_batch(self, snapshot: Snapshot, batch: PreparedBatch, vectors: np.ndarray) -> Snapshot:
        if not batch.documents:
            return snapshot
        template = snapshot.template
        calibrate_on = None
        if vectors is not None and not template.is_trained:  # the first vectors decide "auto" and train IVF codebooks
            template = template.empty_like()
            template.train(vectors)
            calibrate_on = vectors
        first = snapshot.next_chunk_id
        rows, position = [], first
        for doc, chunks in zip(batch.documents, batch.chunk_lists):
            rows.append((doc, chunks, list(range(position, position + len(chunks)))))
            position += len(chunks)
        self._pending_names += 1
        segment = Segment.build(f"pending-{self._pending_names}", rows, vectors, template, batch.term_lists, batch.algorithms)
        if calibrate_on is not None:  # nprobe / k_factor for the recall target, measured on these vectors
            calibrate_template(template, [segment.vectors], np.arange(first, position, dtype=np.int64), calibrate_on,
                               self.settings.vector_search)
        states = [*snapshot.states, SegmentState(segment)]
        pending = [s for s in states if s.segment.path is None]
        if len(pending) > MAX_PENDING_SEGMENTS:
            self._pending_names += 1
            merged = Segment.merge(f"pending-{self._pending_names}", [(s.segment, s.deleted) for s in pending], template,
                                   None, snapshot.sparse_config)
            states = [s for s in states if s.segment.path is not None] + [SegmentState(merged)]
        return snapshot.derive(states, template=template, next_chunk_id=position)

    @staticmethod
    def _without(snapshot: Snapshot, doc_ids: Iterable[str]) -> tuple[Snapshot, int]:
        """``snapshot`` with ``doc_ids`` marked deleted (absent ones skipped) and the chunk count removed."""
        per_state: dict[int, list[int]] = {}
        documents: dict[int, int] = {}
        for doc_id in doc_ids:
            found = snapshot.locate(doc_id)
            if found is not None:
                per_state.setdefault(found[0], []).extend(found[1])
                documents[found[0]] = documents.get(found[0], 0) + 1
        if not per_state:
            return snapshot, 0
        states = list(snapshot.states)
        for position, ids in per_state.items():
            states[position] = with_deleted(states[position], np.asarray(ids, dtype=np.int64), documents[position])
        return snapshot.derive(states), sum(len(ids) for ids in per_state.values())

    def _swap(self, snapshot: Snapshot) -> None:
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._changed = True

    def _check_writable(self) -> None:
        if not self._writable:
            raise ReadOnlyIndexError(
                f"this index was opened read-only; open it with DocumentIndex.load({str(self.path)!r}, writable=True) "
                "to change it"
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer's mutex and, in a directory, the writer lock (released again if nothing changed)."""
        with self._mutex:
            self.lock_for_writing(self.lock_timeout)
            try:
                yield
            finally:
                if not self._changed:
                    self._release_lock()

    # ------------------------------------------------------------------------------------ copies and vector sides
    def _new_template(self) -> FaissVectorStore:
        """The vector store new in-memory segments start from: the spec's (FAISS), or exact Flat until a publish
        writes them into Milvus collections."""
        spec = "Flat" if self.settings.vector_store.is_milvus else self.settings.index_spec
        return FaissVectorStore(self.encoder.dim, spec)

    def with_vector_spec(
        self, spec: str, nprobe: int | None = None, vector_search: VectorSearchSettings | None = None
    ) -> DocumentIndex:
        """An in-memory copy whose vectors are re-indexed under ``spec`` (same chunks, no re-encoding); its search
        knobs are calibrated for ``vector_search`` (default: this index's settings)."""
        changes = {"index_spec": spec}
        if vector_search is not None:
            changes["vector_search"] = vector_search.to_dict()
        settings = IndexSettings.from_dict({**self.settings.to_dict(), **changes})
        snapshot = rebuild.with_vector_spec(self._snapshot, spec, nprobe, settings.vector_search)
        return DocumentIndex(self.encoder, settings, _snapshot=snapshot)

    def with_sparse(self, config: SparseConfig) -> DocumentIndex:
        """An in-memory copy whose BM25 side is analysed again under ``config`` (same chunks and vectors)."""
        settings = IndexSettings.from_dict({**self.settings.to_dict(), "sparse": config.to_dict()})
        snapshot = rebuild.with_sparse(self._snapshot, config if config.enabled else None)
        return DocumentIndex(self.encoder, settings, _snapshot=snapshot)

    def set_query_model(self, path: str | Path | None) -> None:
        """Make sparse and hybrid searches use the learned query model in ``path`` (None: stop using one); its
        checksum is recorded, and a model fitted under other BM25 settings is refused. Nothing is re-analysed;
        call :meth:`save` to publish it as the next version (readers keep the old scoring until then)."""
        from .sparse.query_model import query_model_checksum

        self._check_writable()
        if not self._snapshot.has_sparse:
            raise InvalidInputError("this index has no sparse (BM25) side for a query model to weigh")
        current = self.settings.sparse
        if path is None:
            config = dataclasses.replace(current, query_model=None, query_model_checksum=None)
        else:
            config = dataclasses.replace(current, query_model=str(path), query_model_checksum=query_model_checksum(path))
            config.load_query_model()  # a bad file or other BM25 settings fail here, before anything changes
        with self._writing():
            self.settings = dataclasses.replace(self.settings, sparse=config)
            self._swap(self._snapshot.derive(self._snapshot.states, sparse=config))

    # ------------------------------------------------------------------------------------ info
    def manifest(self) -> dict[str, Any]:
        """What this index would record as a version (encoder, settings, vectors, counts)."""
        documents, chunks = self._snapshot.counts()
        return {
            "format_version": FORMAT_VERSION, "library": "deepseek-rag", **self._manifest_parts(),
            "index_spec": self._snapshot.spec, "version": self.version,
            "counts": {"documents": documents, "chunks": chunks, "vectors": self._snapshot.vector_count()},
        }

    def __len__(self) -> int:
        return self._snapshot.counts()[0]

    def info(self) -> dict[str, Any]:
        """Counts, spec, sizes, version and encoder identity, as ``deepseek-rag info`` prints them."""
        snapshot = self._snapshot
        documents, chunks = snapshot.counts()
        info = {
            "path": str(self.path) if self.path else None,
            "version": self.version,
            "documents": documents,
            "chunks": chunks,
            "segments": len(snapshot.states),
            "index_spec": snapshot.spec if snapshot.dense else None,
            "dense": snapshot.dense,
            "index_bytes": snapshot.nbytes(),
            "vector_ram_bytes": snapshot.vector_ram_bytes(),
            "vector_search": snapshot.template.search_record(),
            "sparse_bytes": snapshot.sparse.nbytes() if snapshot.has_sparse else None,
            "encoder": self.encoder.fingerprint(),
            "settings": self.settings.to_dict(),
        }
        if self.path is not None:
            info["bytes_on_disk"] = directory_bytes(self.path)
        return info

    def document_ids(self) -> list[str]:
        return self._snapshot.document_ids()

    def get_document(self, doc_id: str) -> Document:
        doc = self._snapshot.get_document(doc_id)
        if doc is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index")
        return doc

    def discard_changes(self) -> None:
        """Forget unsaved changes: back to the directory's current version, the writer lock let go."""
        with self._mutex:
            if self._changed and self.path is not None and (self.path / CURRENT_NAME).exists():
                self._changed = False
                self._reopen()
            self._changed = False
            self._release_lock()

    def close(self) -> None:
        """Drop unsaved changes and let the writer lock go (the directory keeps its last published version)."""
        self.discard_changes()
