"""The FAISS backend of the ``VectorStore`` protocol: one factory string, int64 ids chosen by the caller.

:class:`FaissVectorStore` trains, adds, removes and searches unit-length float32 vectors by inner product
(scores are higher-is-better, never distances), saves atomically and opens memory-mapped. It stores no
text and encodes nothing; the chunk store maps ids to chunks. Searches are safe from many threads at once
(faiss releases the GIL); ``add``/``remove``/``save`` must not overlap anything else, and in an index they
never do: a published segment's store is never changed again, deletions are id filters at search time.

How ids are kept, and why:

* IVF indexes (``"IVF1024,PQ48x8"``, ``"OPQ8,IVF256,Flat"``...) store the caller's ids in their own
  inverted lists, with a hashtable direct map for removal. They are never wrapped in ``IndexIDMap2``:
  its ``remove_ids`` corrupts ids on IVF and a second call aborts the process. Fast-scan IVF (``...fs``)
  keeps no direct map, because faiss removes from its block lists only by scanning them.
* Every other index (``"Flat"``, ``"HNSW32"``, ``"PQ16x8"``...) sits inside ``IndexIDMap2``.
* A spec ending in ``,Refine(SQ8)`` / ``,Refine(Flat)`` / ``,RFlat`` is two-level: the first part (held as
  above) finds ``k × k_factor`` candidates, which are re-scored with finer codes kept in a memory-mapped file
  beside the index (``refine.py``). faiss's own ``IndexRefine`` is never built: it numbers vectors itself
  and implements neither ``add_with_ids`` nor ``remove_ids``.

Two faiss behaviours shape the rest: 8-bit PQ codecs skip faiss's default polysemous training (~5 s per
sub-quantizer, used only by Hamming-filtered search, which this module never does); and an IVF index
loaded memory-mapped is read-only, because faiss cannot modify on-disk lists and a failed add leaves the
index crashing the process on its next search. Reading and writing the files is ``faiss_files.py``, the
parts of a search around ``index.search`` ``faiss_search.py``, the GPU copy ``faiss_gpu.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from ..errors import IndexSpecError, InvalidInputError
from .arrays import as_ids, as_matrix, check_new_ids, few_query_threads, positive_int
from .base import Capabilities, IdFilter, search_params
from .faiss_files import adopt_loaded, file_signature, fsync_folder_of, read_index_file, write_index_file
from .faiss_gpu import GPU_MAX_K, GpuMirror, want_gpu
from .faiss_search import exact_rescored_search, exact_search, id_selection, rescore, search_parameters
from .refine import RefineCodes, refine_path
from .specs import (
    DEFAULT_K_FACTOR,
    build_faiss_index,
    check_training_size,
    default_nprobe,
    faiss_reason,
    ivf_of,
    resolve_auto_spec,
    split_refine,
    uses_block_lists,
)

logger = logging.getLogger(__name__)

EXACT_FILTER_LIMIT = 4096
"""A filtered search allowing at most this many ids scores each of them exactly (their stored vectors fetched by
id) instead of searching the index: an IVF search would visit only the probed lists, and miss most of a narrow
filter's documents. Wider filters search IVF with nprobe raised in proportion, as many allowed candidates as
an unfiltered search sees."""
EXACT_RESCORE_LIMIT = 16384
"""The same with re-scoring vectors (a two-level index's finer codes, or the caller's): reading and scoring them
for this many ids costs less than the full fast-scan pass a selector of that many ids makes faiss do."""


class FaissVectorStore:
    """A FAISS index built from one factory string; vectors carry int64 ids chosen by the caller.

    ``spec="auto"`` is resolved by :func:`resolve_auto_spec` from the first batch trained on or added,
    so build an auto index by adding the whole corpus at once. ``nprobe`` (IVF only) is a search-time
    knob, defaulting to :func:`default_nprobe`. With ``use_gpu`` None a GPU is used when faiss sees one:
    searches then run on a GPU clone made lazily and dropped on every add/remove; the CPU index is the one
    saved. Filtered searches always run on the CPU. Search knobs go in ``params``: ``nprobe`` (IVF),
    ``efSearch`` (HNSW), ``k_factor`` (two-level specs: ``k × k_factor`` candidates are re-ranked). The
    defaults of ``nprobe`` and ``k_factor`` are the store's own (``calibration.py`` chooses them for an index).

    Not thread-safe for writes: concurrent searches are fine, but ``add``/``remove``/``save`` must not
    overlap any other call; the caller holds the lock.
    """

    def __init__(self, dim: int, spec: str = "auto", *, use_gpu: bool | None = None) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise IndexSpecError(f"index spec must be a faiss factory string or 'auto', got {spec!r}")
        self._dim = positive_int(dim, "dim")
        self._spec = spec.strip()
        self._index: faiss.Index | None = None
        self._refine: RefineCodes | None = None  # re-ranking codes, one row per id in self._ids
        if self._spec != "auto":
            self._build(self._spec)
        self._ids = np.empty(0, dtype=np.int64)  # sorted ids present in the index
        self._nprobe: int | None = None
        self._k_factor: int | None = None
        self.calibration: dict[str, Any] | None = None
        """How ``nprobe`` / ``k_factor`` were chosen (``calibration.py``), saved in the index's version record."""
        self._mapped_from: tuple[str, tuple[int, int, int]] | None = None  # (path, stat) when mmapped read-only
        self._use_gpu = want_gpu(use_gpu)
        self._gpu = GpuMirror()

    # ---------------------------------------------------------------- properties
    @property
    def _index(self) -> faiss.Index | None:
        return self._faiss_index

    @_index.setter
    def _index(self, index: faiss.Index | None) -> None:
        self._faiss_index = index
        self._ivf = None if index is None else ivf_of(index)  # looked up once, not on every search

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> str:
        """The resolved factory string ("auto" only until the first train/add)."""
        return self._spec

    @property
    def ntotal(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def is_trained(self) -> bool:
        return (self._index is not None and bool(self._index.is_trained)
                and (self._refine is None or self._refine.is_trained))

    @property
    def refined(self) -> bool:
        """True for a two-level spec (``...,Refine(SQ8)``): candidates are re-ranked with finer codes."""
        return self._refine is not None

    @property
    def read_only(self) -> bool:
        """True for an IVF index loaded memory-mapped: it can be searched and saved, not changed."""
        return self._mapped_from is not None

    @property
    def ids(self) -> np.ndarray:
        """The ids held, sorted (a copy)."""
        return self._ids.copy()

    @property
    def nlist(self) -> int | None:
        ivf = None if self._index is None else ivf_of(self._index)
        return None if ivf is None else int(ivf.nlist)

    @property
    def nprobe(self) -> int | None:
        """IVF lists probed per query, clamped to nlist (None for non-IVF); set None for the default."""
        nlist = self.nlist
        if nlist is None:
            return self._nprobe
        return min(nlist, self._nprobe) if self._nprobe is not None else default_nprobe(nlist)

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        self._nprobe = None if value is None else positive_int(value, "nprobe")

    @property
    def k_factor(self) -> int | None:
        """Candidates re-ranked per result (two-level specs only; None otherwise); set None for the default."""
        if self._refine is None:
            return None
        return self._k_factor if self._k_factor is not None else DEFAULT_K_FACTOR

    @k_factor.setter
    def k_factor(self, value: int | None) -> None:
        self._k_factor = None if value is None else positive_int(value, "k_factor")

    def search_record(self) -> dict[str, Any]:
        """What an index records of its search knobs: ``nprobe`` / ``k_factor`` as set (None: the default) and
        the ``calibration`` that chose them."""
        return {"nprobe": self._nprobe, "k_factor": self._k_factor, "calibration": self.calibration}

    def search_defaults(self) -> dict[str, int]:
        """The knobs set on this store, as ``search(params=...)`` takes them (what its segments search with)."""
        return {key: value for key, value in (("nprobe", self._nprobe), ("k_factor", self._k_factor)) if value is not None}

    def __repr__(self) -> str:
        return f"FaissVectorStore(dim={self._dim}, spec={self._spec!r}, ntotal={self.ntotal})"

    # ---------------------------------------------------------------- building
    def train(self, vectors: np.ndarray) -> None:
        """Train on ``vectors`` (resolving "auto" from their count); a no-op once trained."""
        x = as_matrix(vectors, self._dim, "training vectors")
        if len(x) == 0:
            raise IndexSpecError(f"cannot train index spec {self._spec!r} on 0 vectors; pass the corpus vectors")
        self._resolve(len(x))
        if self.is_trained:
            return
        check_training_size(self._spec, self._ivf, len(x))
        try:
            self._index.train(x)
            if self._refine is not None:
                self._refine.train(x)
        except RuntimeError as exc:
            raise IndexSpecError(
                f"cannot train index spec {self._spec!r} on {len(x)} vectors: {faiss_reason(exc)}; "
                "use 'auto', a smaller codec, or more vectors"
            ) from exc

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` under ``ids`` (training on them first if untrained); ids must be new."""
        self._check_writable()
        x = as_matrix(vectors, self._dim, "vectors")
        new_ids = as_ids(ids, expected=len(x))
        if len(x) == 0:
            return
        check_new_ids(new_ids, self._ids)
        if not self.is_trained:
            self.train(x)
        codes = None if self._refine is None else self._refine.encoded(x)
        self._index.add_with_ids(x, new_ids)
        if codes is not None:
            self._refine = self._refine.inserted(self._ids, new_ids, codes)
        self._ids = np.union1d(self._ids, new_ids)
        self._gpu.drop()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present (absent ids are not counted, not an error)."""
        self._check_writable()
        present = np.unique(as_ids(ids))
        present = present[np.isin(present, self._ids, assume_unique=True)]
        if len(present) == 0:
            return 0
        ivf = ivf_of(self._index)
        hashtable = ivf is not None and ivf.direct_map.type == faiss.DirectMap.Hashtable
        # a hashtable direct map accepts only IDSelectorArray
        selector = faiss.IDSelectorArray(present) if hashtable else faiss.IDSelectorBatch(present)
        try:
            removed = int(self._index.remove_ids(selector))
        except RuntimeError as exc:
            raise InvalidInputError(
                f"index spec {self._spec!r} does not support deletion ({faiss_reason(exc)}); "
                "rebuild with 'Flat' or an IVF spec to remove vectors"
            ) from exc
        assert removed == len(present), (removed, len(present))
        if self._refine is not None:
            self._refine = self._refine.without(~np.isin(self._ids, present, assume_unique=True))
        self._ids = np.setdiff1d(self._ids, present, assume_unique=True)
        self._gpu.drop()
        return removed

    # ---------------------------------------------------------------- searching
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: IdFilter | None = None,
        params: Mapping[str, Any] | None = None,
        rescore_vectors: Callable[[np.ndarray], np.ndarray] | None = None,
        rescore_factor: int = 4,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids), each (n, k); a 1-D query gives (1, k). Missing results: id -1, score -inf.

        ``filter`` (an :class:`IdFilter`) keeps only allowed ids and never returns excluded ones.
        ``params``: ``nprobe`` (IVF lists probed), ``efSearch`` (HNSW), ``k_factor`` (two-level specs:
        ``k * k_factor`` candidates are re-scored with the re-ranking codes). ``rescore_vectors(ids) -> (len(ids), dim)``
        turns on exact re-ranking: ``k * rescore_factor`` candidates are fetched and re-scored by inner product
        with the vectors it returns (in the order of the ids given; it replaces a two-level spec's own codes).
        HNSW explores only ``efSearch`` nodes, so a narrow filter may return fewer than k results.
        """
        k = positive_int(k, "k")
        rescore_factor = positive_int(rescore_factor, "rescore_factor")
        knobs = search_params(params, ("nprobe", "efSearch", "k_factor"), "faiss")
        if rescore_vectors is None and self._refine is not None:
            rescore_vectors = self._refine_vectors
            rescore_factor = positive_int(knobs["k_factor"], "k_factor") if knobs.get("k_factor") is not None else self.k_factor
        q = as_matrix(queries, self._dim, "queries", allow_1d=True)
        probe = None if knobs.get("nprobe") is None else positive_int(knobs["nprobe"], "nprobe")
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        selector, available, keep_alive = id_selection(filter, self._ids)
        if len(q) == 0 or available <= 0:
            return scores, ids
        fetch = min(available, k if rescore_vectors is None else k * rescore_factor)
        allowed = keep_alive[0] if filter is not None and filter.allowed is not None else None
        if allowed is not None and len(allowed) <= (EXACT_RESCORE_LIMIT if rescore_vectors is not None else EXACT_FILTER_LIMIT):
            if rescore_vectors is not None:  # the finer vectors score every allowed id: exact, and no index pass
                with few_query_threads(len(q)):  # decoding is OpenMP-parallel in faiss
                    exact_rescored_search(q, k, allowed, rescore_vectors, self._dim, scores, ids)
                return scores, ids
            if exact_search(self._index, self._ivf, self._dim, q, k, allowed, scores, ids):
                return scores, ids
        lists = probe or self.nprobe or 1
        if allowed is not None and self._ivf is not None:  # probe as many more lists as the filter is narrow
            lists = int(np.ceil(lists * self.ntotal / max(1, len(allowed))))
        ef_search = None if knobs.get("efSearch") is None else positive_int(knobs["efSearch"], "efSearch")
        search_args = search_parameters(self._ivf, selector, lists, ef_search)
        index = self._index
        if self._use_gpu and selector is None and max(fetch, getattr(search_args, "nprobe", 0)) <= GPU_MAX_K:
            index = self._gpu.index_for(self._index, self._spec) or index
        with few_query_threads(len(q)):  # decoding re-ranking codes is OpenMP-parallel in faiss too (n > 100)
            found_scores, found_ids = index.search(q, fetch, params=search_args)
            del keep_alive
            found_scores[found_ids < 0] = -np.inf
            if rescore_vectors is not None:
                found_scores, found_ids = rescore(q, found_ids, rescore_vectors, self._dim)
        m = min(k, found_ids.shape[1])
        scores[:, :m] = found_scores[:, :m]
        ids[:, :m] = found_ids[:, :m]
        return scores, ids

    def fetch(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (decoded codes for compressed indexes), in the order given."""
        wanted = as_ids(ids)
        missing = wanted[~np.isin(wanted, self._ids)]
        if len(missing):
            raise InvalidInputError(f"ids not in the index: {missing[:5].tolist()}")
        if self._index is None or not len(wanted):
            return np.zeros((len(wanted), self._dim), dtype=np.float32)
        if self._refine is not None:
            return self._refine_vectors(wanted)
        ivf = ivf_of(self._index)
        if ivf is not None and uses_block_lists(ivf):
            raise InvalidInputError(f"index spec {self._spec!r} (fast-scan) cannot return stored vectors")
        try:
            if hasattr(self._index, "reconstruct_batch"):
                return np.asarray(self._index.reconstruct_batch(wanted), dtype=np.float32).reshape(len(wanted), self._dim)
            return np.vstack([self._index.reconstruct(int(i)) for i in wanted]).astype(np.float32)
        except RuntimeError as exc:
            raise InvalidInputError(f"index spec {self._spec!r} cannot return stored vectors ({faiss_reason(exc)})") from exc

    @property
    def capabilities(self) -> Capabilities:
        ivf = None if self._index is None else ivf_of(self._index)
        return Capabilities(delete=True, metadata_filter=False, mmap=ivf is not None or self._refine is not None,
                            gpu=self._use_gpu)

    def empty_like(self) -> FaissVectorStore:
        """A store with this one's trained codebooks (IVF centroids, quantizer ranges) and no vectors."""
        if self._index is None:
            return FaissVectorStore(self._dim, self._spec, use_gpu=self._use_gpu)
        source = self._in_memory_index()
        clone = faiss.clone_index(source)
        clone.reset()
        obj = FaissVectorStore(self._dim, "auto", use_gpu=self._use_gpu)
        obj._index, obj._spec, obj._nprobe, obj._k_factor = clone, self._spec, self._nprobe, self._k_factor
        obj._refine = None if self._refine is None else self._refine.empty_like()
        obj.calibration = self.calibration
        inner = ivf_of(clone)
        if inner is not None and not uses_block_lists(inner) and inner.direct_map.type != faiss.DirectMap.Hashtable:
            inner.set_direct_map_type(faiss.DirectMap.Hashtable)
        return obj

    @classmethod
    def merged(cls, template: FaissVectorStore, parts: Sequence[tuple[FaissVectorStore, np.ndarray | None]]) -> FaissVectorStore:
        """One store holding every vector of ``parts`` except each part's excluded ids (sorted arrays); see
        :func:`~deepseek_rag.vectors.faiss_merge.merge_stores`."""
        from .faiss_merge import merge_stores

        return merge_stores(template, parts)

    def _in_memory_index(self) -> faiss.Index:
        """The faiss index itself, read fully into memory when it is memory-mapped."""
        if self._mapped_from is None:
            return self._index
        return faiss.read_index(self._mapped_from[0])

    def _refine_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The re-ranking codes of ``ids`` (held by this store), decoded."""
        rows = np.searchsorted(self._ids, ids)
        assert len(rows) == 0 or (rows.max() < len(self._ids) and (self._ids[rows] == ids).all()), "ids not held"
        return self._refine.decode(rows)

    # ---------------------------------------------------------------- persistence
    def nbytes(self) -> int:
        """Size of the files :meth:`save` writes (the index, and the re-ranking codes of a two-level spec)."""
        if self._mapped_from is not None:
            size = os.path.getsize(self._mapped_from[0])
        else:
            size = 0 if self._index is None else int(faiss.serialize_index(self._index).nbytes)
        return size + (0 if self._refine is None else self._refine.file_nbytes())

    def ram_nbytes(self) -> int:
        """Bytes a search needs resident in RAM: the index (memory-mapped IVF lists too: every query scans
        ``nprobe`` of them, so they end up in the page cache) and the sorted ids; a two-level spec's re-ranking
        codes only when they are not memory-mapped (a query reads ``k × k_factor`` scattered rows of them)."""
        if self._index is None:
            return 0
        if self._mapped_from is not None:
            size = os.path.getsize(self._mapped_from[0])
        else:
            size = int(faiss.serialize_index(self._index).nbytes)
        return size + int(self._ids.nbytes) + (0 if self._refine is None else self._refine.ram_nbytes())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically: a temporary file beside it, fsync, rename over. A two-level
        spec's re-ranking codes go to ``path`` with the suffix ``.refine``, written (atomically) first."""
        if self._index is None:
            raise InvalidInputError(f"nothing to save to {os.fspath(path)}: the 'auto' index is not built; add vectors first")
        path = os.fspath(path)
        if self._refine is not None:
            self._refine.save(refine_path(path), self._ids)
        write_index_file(self._index, path, self._mapped_from)
        if self._refine is None and refine_path(path).exists():  # left by a two-level index saved here before
            refine_path(path).unlink()
        fsync_folder_of(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, mmap: bool = True, use_gpu: bool | None = None) -> FaissVectorStore:
        """Read a store saved by :meth:`save`.

        With ``mmap`` an IVF index's lists stay on disk (memory-mapped); faiss cannot modify such lists
        (a failed add leaves the index unusable), so the store is read-only. ``mmap=False`` reads it into
        memory so ``add``/``remove`` work. Non-IVF indexes are always read into memory. A two-level spec's
        re-ranking codes are memory-mapped with ``mmap`` (read-only; an add or remove copies them to memory).
        """
        path = os.fspath(path)
        index = read_index_file(path, mmap)
        obj = cls(int(index.d), "auto", use_gpu=use_gpu)
        obj._index = index
        obj._ids, mapped, obj._spec = adopt_loaded(index, path)
        if mapped:
            obj._mapped_from = (path, file_signature(path))
        if refine_path(path).is_file():
            obj._refine = RefineCodes.open(refine_path(path), obj._ids, mmap_codes=mmap)
            obj._spec = f"{obj._spec},Refine({obj._refine.codec_spec})"
        return obj

    # ---------------------------------------------------------------- helpers
    def _build(self, spec: str) -> None:
        base, codec = split_refine(spec)
        self._index = build_faiss_index(base, self._dim, full_spec=spec)
        self._refine = None if codec is None else RefineCodes.new(codec, self._dim, spec)

    def _resolve(self, n_vectors: int) -> None:
        if self._index is None:
            self._spec = resolve_auto_spec(n_vectors, self._dim)
            logger.info("index spec 'auto' resolved to %r for %d vectors", self._spec, n_vectors)
            self._build(self._spec)

    def _check_writable(self) -> None:
        if self._mapped_from is not None:
            raise InvalidInputError(
                f"this index is memory-mapped read-only from {self._mapped_from[0]}; "
                "open it with FaissVectorStore.open(path, mmap=False) to add or remove vectors"
            )


VectorIndex = FaissVectorStore
"""The first release's name for the FAISS store (``from deepseek_rag import VectorIndex`` keeps working)."""
