"""DocumentIndex: documents in, chunks stored, vectors indexed — built, changed, saved and loaded as one.

It ties together chunking (``chunking.py``), the dual encoder (``encoder.py``), the FAISS index
(``index.py``), the BM25 index over the same chunks (``sparse.py``) and the SQLite store (``store.py``)
and owns the index directory's save protocol (``index_dir.py``). Searching lives in ``retriever.py``;
this class only answers vector and BM25 searches by chunk id.

Thread safety: encoding runs outside the lock, so queries from many threads proceed while another thread
encodes new documents; the short store + FAISS updates and every search hold one lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .ingest.chunking import MARKDOWN_HEADING, ChunkingConfig, chunk_document
from .documents import Chunk, Document
from .encoding.dual_encoder import DualEncoder, EncoderConfig, check_fingerprint
from .errors import DocumentNotFoundError, IndexFormatError, InvalidInputError
from .vectors.faiss_store import VectorIndex
from .ingest.language import detect_language
from .storage.layout import (
    MANIFEST_NAME,
    PENDING_SUFFIX,
    STORE_NAME,
    VECTORS_NAME,
    file_checksum,
    fsync_path,
    read_manifest,
    settle_vectors_file,
    write_manifest,
)
from .sparse.bm25 import SPARSE_NAME, SparseConfig, SparseIndex, settle_sparse_file
from .storage.chunk_store import ChunkStore

logger = logging.getLogger(__name__)

MAX_HEADER_CHARS = 160  # a contextual header is a hint, not a second chunk


@dataclass
class IndexSettings:
    """How documents become vectors; saved in the manifest so ``add`` later cuts and embeds the same way."""

    index_spec: str = field(default="auto", metadata={"help": "FAISS factory string, or 'auto' (by corpus size)."})
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    contextual_headers: bool = field(
        default=True, metadata={"help": "Embed each chunk with its document title and section heading in front."}
    )
    sparse: SparseConfig = field(
        default_factory=SparseConfig, metadata={"help": "The BM25 side: analysis and scoring (enabled=False: none)."}
    )
    detect_language: bool = field(
        default=True,
        metadata={"help": "Record metadata['language'] (detected) on documents without one; it picks the BM25 analyzer."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.chunking, dict):
            self.chunking = ChunkingConfig.from_dict(self.chunking)
        if isinstance(self.sparse, dict):
            self.sparse = SparseConfig.from_dict(self.sparse)
        if not isinstance(self.index_spec, str) or not self.index_spec.strip():
            raise InvalidInputError(f"index_spec={self.index_spec!r} must be a FAISS factory string or 'auto'")

    def to_dict(self) -> dict[str, Any]:
        return {
            "index_spec": self.index_spec,
            "chunking": self.chunking.to_dict(),
            "contextual_headers": self.contextual_headers,
            "sparse": self.sparse.to_dict(),
            "detect_language": self.detect_language,
        }


def chunk_header(title: str | None, section: str | None) -> str:
    """The context put in front of a chunk's text when it is embedded (never part of the returned text)."""
    parts = [p.strip() for p in (title, section) if p and p.strip()]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return " — ".join(parts)[:MAX_HEADER_CHARS]


class DocumentIndex:
    """Chunked documents with their vectors: build, add, upsert, delete, save, load.

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
        _store: ChunkStore | None = None,
        _vectors: VectorIndex | None = None,
        _sparse: SparseIndex | None = None,
        _path: Path | None = None,
    ) -> None:
        self.encoder = encoder or DualEncoder()
        self.settings = settings or IndexSettings()
        self.store = _store or ChunkStore(None)
        self.vectors = _vectors or VectorIndex(self.encoder.dim, self.settings.index_spec)
        self.sparse: SparseIndex | None = None
        if self.settings.sparse.enabled:
            self.sparse = _sparse or SparseIndex(self.settings.sparse)
        self.path = _path
        self._lock = threading.RLock()

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
            base = (settings or IndexSettings()).to_dict()
            settings = IndexSettings(**{**base, **setting_overrides})
        index = cls(encoder, settings)
        index.add_documents(documents, progress=progress)
        return index

    def chunk(self, document: Document) -> list[Chunk]:
        """Cut one document into chunks that fit the encoder with their header and prefix."""
        reserved = self.encoder.document_prefix_tokens
        if self.settings.contextual_headers:
            # Room for the longest header any chunk of this document gets (title — section heading).
            longest = max(MARKDOWN_HEADING.findall(document.text), key=len, default=None)
            header = chunk_header(document.title, longest)
            if header:
                reserved += self._header_tokens(header) + 1
        # The encoder reads max_seq_length tokens (MiniLM: 256), often fewer than its tokenizer's
        # model_max_length (512): windows must fit what is read, header and special tokens included.
        limit = self.encoder.max_seq_length - self.encoder.tokenizer.num_special_tokens_to_add() - reserved
        if limit < 8:
            raise InvalidInputError(
                f"document {document.id!r}: its title and the document prefix leave {limit} tokens of the encoder's "
                f"{self.encoder.max_seq_length}; shorten the title or index with contextual_headers=False"
            )
        config = self.settings.chunking
        if config.max_tokens > limit:
            config = replace(
                config, max_tokens=limit, overlap=min(config.overlap, limit // 2), min_tokens=min(config.min_tokens, limit)
            )
        return chunk_document(document, self.encoder.tokenizer, config, reserved_tokens=reserved)

    def _header_tokens(self, header: str) -> int:
        return len(self.encoder.tokenizer(header, add_special_tokens=False)["input_ids"])

    def embedding_text(self, chunk: Chunk, title: str | None) -> str:
        """The text the encoder reads for ``chunk``: its header (when enabled) and its text."""
        if not self.settings.contextual_headers:
            return chunk.text
        header = chunk_header(title, chunk.section)
        return f"{header}\n{chunk.text}" if header else chunk.text

    def sparse_text(self, chunk: Chunk, title: str | None) -> str:
        """The text the BM25 side analyses for ``chunk``: its header (when ``settings.sparse.headers``) and its text."""
        header = chunk_header(title, chunk.section) if self.settings.sparse.headers else ""
        return f"{header}\n{chunk.text}" if header else chunk.text

    def _sparse_text_of_stored(self, chunk: Chunk) -> str:
        title = chunk.metadata.get("title")
        return self.sparse_text(chunk, str(title) if title else None)

    def _with_language(self, doc: Document) -> Document:
        """``doc`` with ``metadata["language"]`` detected when the caller set none (a copy; the caller's is kept)."""
        if not self.settings.detect_language or doc.metadata.get("language"):
            return doc
        language = detect_language(doc.text)
        return Document(doc.id, doc.text, {**doc.metadata, "language": language}) if language else doc

    def _prepare(
        self, documents: Iterable[Document], progress: bool | None
    ) -> tuple[list[Document], list[list[Chunk]], np.ndarray, list[list[str]]]:
        documents = list(documents)
        seen: set[str] = set()
        for doc in documents:
            if not isinstance(doc, Document):
                raise InvalidInputError(f"expected Document objects, got {type(doc).__name__}; see loaders.documents_from_records")
            if doc.id in seen:
                raise InvalidInputError(f"document id {doc.id!r} appears twice in this batch; ids must be unique")
            seen.add(doc.id)
        documents = [self._with_language(doc) for doc in documents]
        chunk_lists = [self.chunk(doc) for doc in documents]
        texts = [self.embedding_text(c, doc.title) for doc, chunks in zip(documents, chunk_lists) for c in chunks]
        vectors = self.encoder.encode_documents(texts, progress=progress)
        terms: list[list[str]] = []
        if self.sparse is not None:  # analysed here, outside the lock, like the encoding
            for doc, chunks in zip(documents, chunk_lists):
                analyzer = self.sparse.analyzer(doc.metadata.get("language"))
                terms.extend(analyzer(self.sparse_text(c, doc.title)) for c in chunks)
        return documents, chunk_lists, vectors, terms

    def add_documents(self, documents: Iterable[Document], *, progress: bool | None = None) -> int:
        """Chunk, encode and add new documents; an id already in the index is an error. Returns chunks added."""
        documents, chunk_lists, vectors, terms = self._prepare(documents, progress)
        with self._lock:
            for doc in documents:
                if self.store.has_document(doc.id):
                    raise InvalidInputError(
                        f"document id {doc.id!r} is already in the index; use upsert_documents to replace it"
                    )
            return self._insert(documents, chunk_lists, vectors, terms)

    def upsert_documents(self, documents: Iterable[Document], *, progress: bool | None = None) -> int:
        """Add documents, replacing any already stored under the same id. Returns chunks added."""
        documents, chunk_lists, vectors, terms = self._prepare(documents, progress)
        with self._lock:
            for doc in documents:
                self._remove_document(doc.id)
            return self._insert(documents, chunk_lists, vectors, terms)

    def _insert(
        self, documents: list[Document], chunk_lists: list[list[Chunk]], vectors: np.ndarray, terms: list[list[str]]
    ) -> int:
        ids: list[int] = []
        try:
            for doc, chunks in zip(documents, chunk_lists):
                ids.extend(self.store.add_document(doc, chunks))
            self.vectors.add(np.asarray(ids, dtype=np.int64), vectors)
            if self.sparse is not None:
                self.sparse.add(ids, terms)
        except Exception:
            # Keep store and vectors in step: drop this batch's rows again (the ids are never reused).
            for doc in documents:
                self.store.delete_document(doc.id)
            raise
        return len(ids)

    def delete_documents(self, doc_ids: Iterable[str], *, missing_ok: bool = False) -> int:
        """Remove documents and their chunks; an unknown id is an error unless ``missing_ok``. Returns chunks removed."""
        doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        with self._lock:
            unknown = [d for d in doc_ids if not self.store.has_document(d)]
            if unknown and not missing_ok:
                raise DocumentNotFoundError(
                    f"no document with id {unknown[0]!r} in the index"
                    + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                    + "; `deepseek-rag info DIR --ids` lists the ids"
                )
            return sum(self._remove_document(d) for d in doc_ids)

    def _remove_document(self, doc_id: str) -> int:
        ids = self.store.delete_document(doc_id)
        if ids:
            self.vectors.remove(np.asarray(ids, dtype=np.int64))
            if self.sparse is not None:
                self.sparse.remove(ids)
        return len(ids)

    # ------------------------------------------------------------------------------------ searching
    def search_vectors(
        self, query_vectors: np.ndarray, k: int, *, filters: Mapping[str, Any] | None = None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search with an optional metadata filter → (scores, chunk ids), both (n, k)."""
        with self._lock:
            allowed = self.store.chunk_ids_matching(filters) if filters else None
            if allowed is not None and len(allowed) == 0:
                n = len(np.atleast_2d(query_vectors))
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            return self.vectors.search(query_vectors, k, allowed_ids=allowed, nprobe=nprobe)

    def search_sparse(
        self, queries: Sequence[str], k: int, *, filters: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 search with an optional metadata filter → (scores, chunk ids), both (n, k); chunks that share
        no term with a query are left out (score -inf, id -1)."""
        with self._lock:
            sparse = self._fresh_sparse()
            allowed = self.store.chunk_ids_matching(filters) if filters else None
            return sparse.search(list(queries), k, allowed_ids=allowed)

    @property
    def has_sparse(self) -> bool:
        """True when this index keeps a BM25 side (``settings.sparse.enabled``)."""
        return self.sparse is not None

    def _fresh_sparse(self) -> SparseIndex:
        """The sparse index, rebuilt first if chunks changed since it was built (call under the lock)."""
        if self.sparse is None:
            raise InvalidInputError(
                "this index has no sparse (BM25) side: it was built with sparse.enabled=False; "
                "search it with mode='dense', or rebuild it with the sparse side enabled"
            )
        if self.sparse.stale:
            started = time.perf_counter()
            self.sparse.rebuild(self.store.iter_chunks(), self._sparse_text_of_stored)
            logger.info("built the sparse index over %d chunks in %.1fs", len(self.sparse), time.perf_counter() - started)
        return self.sparse

    def as_retriever(self, **options: Any):  # -> Retriever (imported lazily: retriever imports this module)
        """A :class:`~deepseek_rag.retriever.Retriever` over this index."""
        from .retrieval.retriever import Retriever

        return Retriever(self, **options)

    # ------------------------------------------------------------------------------------ persistence
    def manifest(self) -> dict[str, Any]:
        documents, chunks = self.store.counts()
        return {
            "format_version": 1,
            "library": "deepseek-rag",
            "library_version": __version__,
            "encoder": {"config": _portable_encoder_config(self.encoder), "fingerprint": self.encoder.fingerprint()},
            "settings": self.settings.to_dict(),
            "index_spec": self.vectors.spec,
            "counts": {"documents": documents, "chunks": chunks, "vectors": len(self.vectors)},
        }

    def save(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Write the index directory atomically: a crash at any moment leaves the old state or the new one."""
        if path is None and self.path is None:
            raise InvalidInputError("this index has no directory yet; pass save(path)")
        target = Path(path) if path is not None else self.path
        with self._lock:
            if len(self.vectors) == 0 and self.vectors.spec == "auto":
                raise InvalidInputError(f"nothing to save to {target}: the index holds no documents yet")
            if self.path is not None and target.resolve() == self.path.resolve():
                self._commit_in_place()
            else:
                self._write_new_directory(target, overwrite)
        return target

    def _commit_in_place(self) -> None:
        folder = self.path
        pending = folder / (VECTORS_NAME + PENDING_SUFFIX)
        sparse_pending = folder / (SPARSE_NAME + PENDING_SUFFIX)
        self.vectors.save(pending)
        if self.sparse is not None:
            self._fresh_sparse().save(sparse_pending)
            self.store.set_meta("sparse_checksum", file_checksum(sparse_pending))
        self.store.set_meta("vectors_checksum", file_checksum(pending))
        self.store.commit()  # the switch from old state to new
        os.replace(pending, folder / VECTORS_NAME)
        if self.sparse is not None:
            os.replace(sparse_pending, folder / SPARSE_NAME)
        fsync_path(folder)
        write_manifest(folder, self.manifest())

    def _write_new_directory(self, target: Path, overwrite: bool) -> None:
        if target.exists() and any(target.iterdir()):
            if not overwrite:
                raise InvalidInputError(
                    f"{target} exists and is not empty; choose another directory or pass overwrite=True (--overwrite)"
                )
            if not (target / MANIFEST_NAME).exists():
                raise InvalidInputError(f"{target} is not an index directory; refusing to overwrite it")
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self.vectors.save(staging / VECTORS_NAME)
        self.store.set_meta("vectors_checksum", file_checksum(staging / VECTORS_NAME))
        if self.sparse is not None:
            self._fresh_sparse().save(staging / SPARSE_NAME)
            self.store.set_meta("sparse_checksum", file_checksum(staging / SPARSE_NAME))
        self.store.commit()
        self.store.backup_to(staging / STORE_NAME)
        write_manifest(staging, self.manifest())
        fsync_path(staging)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
        fsync_path(target.parent)
        # From now on this index lives in the directory: reopen the store there.
        self.store.close()
        self.store = ChunkStore(target / STORE_NAME, create=False)
        self.path = target

    @classmethod
    def load(
        cls,
        path: str | Path,
        encoder: DualEncoder | None = None,
        *,
        writable: bool = False,
        encoder_overrides: Mapping[str, Any] | None = None,
    ) -> DocumentIndex:
        """Open an index directory; the encoder is rebuilt from the manifest unless one is given.

        ``writable=False`` memory-maps IVF vectors (read-only, small RSS); pass ``writable=True`` to add
        or delete. An encoder other than the one that built the index is an :class:`EncoderMismatchError`.
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        if encoder is None:
            config = {**manifest["encoder"]["config"], **(encoder_overrides or {})}
            encoder = DualEncoder(EncoderConfig.from_dict(config))
        check_fingerprint(manifest["encoder"]["fingerprint"], encoder.fingerprint(), str(folder))
        store = ChunkStore(folder / STORE_NAME, create=False)
        try:
            vectors_path = settle_vectors_file(folder, store.get_meta("vectors_checksum"))
            vectors = VectorIndex.load(vectors_path, mmap=not writable, writable=writable)
        except Exception:
            store.close()
            raise
        if vectors.dim != encoder.dim:
            store.close()
            raise IndexFormatError(f"{vectors_path} holds {vectors.dim}-d vectors but the encoder makes {encoder.dim}-d ones")
        unknown = set(manifest["settings"]) - set(IndexSettings.__dataclass_fields__)
        if unknown:
            raise IndexFormatError(
                f"{folder} was written by a newer deepseek-rag (settings {', '.join(sorted(unknown))} are unknown "
                f"to {__version__}); upgrade deepseek-rag to open it"
            )
        settings = IndexSettings(**manifest["settings"])
        sparse = None
        if settings.sparse.enabled:
            # Derived data: an index saved before it had a sparse side, or with a damaged sparse file, gets
            # its BM25 index rebuilt from the store before its first sparse search (and saved with the next save).
            try:
                sparse_path = settle_sparse_file(folder, store.get_meta("sparse_checksum"))
                sparse = SparseIndex.load(sparse_path, settings.sparse) if sparse_path else SparseIndex(settings.sparse)
            except Exception:
                store.close()
                raise
            if not sparse.stale and len(sparse) != store.counts()[1]:
                sparse = SparseIndex(settings.sparse)
        return cls(encoder, settings, _store=store, _vectors=vectors, _sparse=sparse, _path=folder)

    # ------------------------------------------------------------------------------------ info
    def __len__(self) -> int:
        return self.store.counts()[0]

    def info(self) -> dict[str, Any]:
        """Counts, spec, sizes and encoder identity, as ``deepseek-rag info`` prints them."""
        manifest = self.manifest()
        documents, chunks = self.store.counts()
        info = {
            "path": str(self.path) if self.path else None,
            "documents": documents,
            "chunks": chunks,
            "index_spec": self.vectors.spec,
            "index_bytes": self.vectors.nbytes(),
            "sparse_bytes": self.sparse.nbytes() if self.sparse is not None else None,
            "encoder": manifest["encoder"]["fingerprint"],
            "settings": manifest["settings"],
        }
        if self.path is not None:
            info["bytes_on_disk"] = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return info

    def document_ids(self) -> list[str]:
        return self.store.document_ids()

    def get_document(self, doc_id: str) -> Document:
        doc = self.store.get_document(doc_id)
        if doc is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index")
        return doc

    def close(self) -> None:
        self.store.close()


def _portable_encoder_config(encoder: DualEncoder) -> dict[str, Any]:
    """The encoder config to record: the bundled model stays ``None`` so the index opens on any machine."""
    config = encoder.config.to_dict()
    for key in ("device", "dtype", "batch_size"):
        config.pop(key, None)  # how to run, not what the vectors mean
    if config.get("model"):
        model = Path(config["model"])
        config["model"] = str(model.resolve()) if model.exists() else config["model"]
    if config.get("adapter"):
        config["adapter"] = str(Path(config["adapter"]).resolve())
    return config

