"""A FAISS vector index described by one factory string, holding int64 ids chosen by the caller.

:class:`VectorIndex` trains, adds, removes and searches unit-length float32 vectors by inner product
(scores are higher-is-better, never distances), saves atomically and loads memory-mapped. It stores no
text and encodes nothing; the store maps ids to chunks. It holds no locks: callers that share one index
between threads serialise writes (``add``/``remove``/``save``) against everything else themselves.

How ids are kept, and why:

* IVF indexes (``"IVF1024,PQ48x8"``, ``"OPQ8,IVF256,Flat"``...) store the caller's ids in their own
  inverted lists, with a hashtable direct map for removal. They are never wrapped in ``IndexIDMap2``:
  its ``remove_ids`` corrupts ids on IVF and a second call aborts the process. Fast-scan IVF (``...fs``)
  keeps no direct map, because faiss removes from its block lists only by scanning them.
* Every other index (``"Flat"``, ``"HNSW32"``, ``"PQ16x8"``...) sits inside ``IndexIDMap2``.
* Refinement (``",RFlat"``, ``",Refine(...)"``) is refused: faiss numbers refined vectors itself and
  implements neither ``add_with_ids`` nor ``remove_ids`` for them. ``search(rescore_vectors=...)``
  re-ranks exactly instead.

Two faiss behaviours shape the rest: 8-bit PQ codecs skip faiss's default polysemous training (~5 s per
sub-quantizer, used only by Hamming-filtered search, which this module never does); and an IVF index
loaded memory-mapped is read-only, because faiss cannot modify on-disk lists and a failed add leaves the
index crashing the process on its next search.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator

import faiss
import numpy as np

from ..errors import IndexFormatError, IndexSpecError, InvalidInputError, MissingDependencyError
from ..storage.layout import fsync_path

logger = logging.getLogger(__name__)

AUTO_IVF_THRESHOLD = 50_000
"""``"auto"`` builds exact ``"Flat"`` below this many vectors and a quantized IVF index from it on."""

AUTO_IVF_CODEC = "SQ8"
"""Codec of the ``"auto"`` IVF index: 8-bit scalar quantization (one byte per dimension, 1/4 of Flat's bytes).
Measured by benchmarks/scale.py on vectors drawn like real all-MiniLM-L6-v2 chunk vectors, it reaches
Recall@10 ≥ 0.95 against exact search at 10k, 100k and 1M vectors (1M: 0.972 at nprobe 128, p99 12.8 ms,
495 MB RSS on 2 cores), while 4-bit fast-scan PQ (``PQ{dim/2}x4fs``, 1/13 of the bytes) stalls at 0.53-0.73
even probing every list. On SciFact both keep ~98% of Flat's nDCG@10 (benchmarks/scifact_core.py)."""

MIN_POINTS_PER_LIST = 39
"""FAISS k-means wants at least this many training vectors per IVF list."""

_GPU_MAX_K = 2048  # faiss GPU search refuses larger k or nprobe; such searches run on the CPU index


def suggest_nlist(n_vectors: int) -> int:
    """IVF list count for ``n_vectors``: about 4·√N as a power of two, with ≥ 39 vectors per list."""
    if n_vectors < 1:
        raise InvalidInputError(f"n_vectors must be positive, got {n_vectors}")
    nlist = 2 ** round(math.log2(4 * math.sqrt(n_vectors)))
    while nlist > 1 and n_vectors // nlist < MIN_POINTS_PER_LIST:
        nlist //= 2
    return nlist


def resolve_auto_spec(n_vectors: int, dim: int) -> str:
    """The factory string ``"auto"`` stands for with ``n_vectors`` vectors of ``dim`` dimensions."""
    if n_vectors < AUTO_IVF_THRESHOLD:
        return "Flat"
    return f"IVF{suggest_nlist(n_vectors)},{AUTO_IVF_CODEC}"


def default_nprobe(nlist: int) -> int:
    """Lists probed when the caller sets none: nlist/32, at least 32, at most nlist.

    benchmarks/scale.py (SQ8 codes, vectors like real MiniLM ones) needed 32 of 1,024 lists at 100k vectors and
    128 of 4,096 at 1M for Recall@10 ≥ 0.95 vs exact; on SciFact chunk vectors IVF128 kept 98% of Flat's
    nDCG@10 at 32 lists.
    """
    return min(nlist, max(32, nlist // 32))


def _faiss_reason(exc: BaseException) -> str:
    """The human part of a faiss C++ exception ("could not parse index string X")."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = re.search(r"\.(?:cpp|h):\d+: (.*)", line)
    reason = match.group(1) if match else line
    return reason.split("failed: ", 1)[-1].strip()


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _has_refine(index: faiss.Index) -> bool:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        return True
    return isinstance(index, faiss.IndexPreTransform) and _has_refine(index.index)


def _uses_block_lists(ivf: faiss.IndexIVF) -> bool:
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.BlockInvertedLists)


def _skip_polysemous_training(index: faiss.Index) -> None:
    """Turn off faiss's default polysemous training of 8-bit PQ: ~5 s per sub-quantizer, unused by search."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    for part in (index, faiss.downcast_index(index.storage) if hasattr(index, "storage") else None):
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False


def _build_faiss_index(spec: str, dim: int) -> faiss.Index:
    if "IDMap" in spec:
        raise IndexSpecError(f"index spec {spec!r}: VectorIndex manages ids itself; drop 'IDMap' from the spec")
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexSpecError(
            f"cannot build index spec {spec!r} for {dim}-dim vectors: {_faiss_reason(exc)}; "
            "fix the factory string or use 'auto'"
        ) from exc
    if _has_refine(index):
        raise IndexSpecError(
            f"index spec {spec!r}: refinement (',RFlat' / ',Refine(...)') numbers vectors itself, so it can "
            "neither keep caller ids nor delete; drop it and pass rescore_vectors= to search() instead"
        )
    _skip_polysemous_training(index)
    ivf = _ivf_of(index)
    if ivf is None:
        return faiss.IndexIDMap2(index)
    if not _uses_block_lists(ivf):
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_matrix(values: object, dim: int, what: str, *, allow_1d: bool = False) -> np.ndarray:
    """``values`` as a C-contiguous float32 (n, dim) matrix, or an :class:`InvalidInputError`."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got dtype {arr.dtype}")
    if allow_1d and arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidInputError(
            f"{what} must have shape (n, {dim}), got {arr.shape}: the vectors do not match this index's dimension"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr.sum(dtype=np.float64)):  # one pass, no n×d mask
        raise InvalidInputError(f"{what} contain NaN or infinite values; check the encoder output")
    return arr


def _as_ids(values: object, what: str = "ids", *, expected: int | None = None) -> np.ndarray:
    """``values`` as a contiguous 1-D int64 array of non-negative ids, or an :class:`InvalidInputError`."""
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1:
        raise InvalidInputError(f"{what} must be a 1-D array of int64, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise InvalidInputError(f"{what} must be integers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if (arr < 0).any():
        raise InvalidInputError(f"{what} must be non-negative (-1 marks 'no result'), got {arr[arr < 0][:5].tolist()}")
    if expected is not None and len(arr) != expected:
        raise InvalidInputError(f"got {len(arr)} {what} for {expected} vectors; pass exactly one id per vector")
    return arr


_FEW_QUERIES = 20  # faiss switches to BLAS (and threads pay off) at 20 queries


@contextlib.contextmanager
def _few_query_threads(n_queries: int) -> Iterator[None]:
    """Search a handful of queries on the calling thread only.

    faiss splits work by query, so one query gains nothing from OpenMP threads, while waking them (and their
    spin-wait afterwards) takes the cores the query encoder needs next: measured 24.5 → 18.7 ms p50 per
    SciFact query on 2 cores. The OpenMP setting is per calling thread, so concurrent searches are unaffected.
    """
    if n_queries >= _FEW_QUERIES:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class VectorIndex:
    """A FAISS index built from one factory string; vectors carry int64 ids chosen by the caller.

    ``spec="auto"`` is resolved by :func:`resolve_auto_spec` from the first batch trained on or added,
    so build an auto index by adding the whole corpus at once. ``nprobe`` (IVF only) is a search-time
    knob, defaulting to :func:`default_nprobe`. With ``use_gpu`` None a GPU is used when faiss sees one:
    searches then run on a GPU clone made lazily and dropped on every add/remove; the CPU index is the one
    saved. Filtered searches (``allowed_ids``) always run on the CPU.

    Not thread-safe for writes: concurrent searches are fine, but ``add``/``remove``/``save`` must not
    overlap any other call; the caller holds the lock.
    """

    def __init__(self, dim: int, spec: str = "auto", *, use_gpu: bool | None = None) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise IndexSpecError(f"index spec must be a faiss factory string or 'auto', got {spec!r}")
        self._dim = _positive_int(dim, "dim")
        self._spec = spec.strip()
        self._index: faiss.Index | None = None if self._spec == "auto" else _build_faiss_index(self._spec, self._dim)
        self._ids = np.empty(0, dtype=np.int64)  # sorted ids present in the index
        self._nprobe: int | None = None
        self._mapped_from: tuple[str, tuple[int, int, int]] | None = None  # (path, stat) when mmapped read-only
        self._use_gpu = self._want_gpu(use_gpu)
        self._gpu_index: faiss.Index | None = None
        self._gpu_resources = None
        self._gpu_failed = False

    # ---------------------------------------------------------------- properties
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
        return self._index is not None and bool(self._index.is_trained)

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
        ivf = None if self._index is None else _ivf_of(self._index)
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
        self._nprobe = None if value is None else _positive_int(value, "nprobe")

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self._dim}, spec={self._spec!r}, ntotal={self.ntotal})"

    # ---------------------------------------------------------------- building
    def train(self, vectors: np.ndarray) -> None:
        """Train on ``vectors`` (resolving "auto" from their count); a no-op once trained."""
        x = _as_matrix(vectors, self._dim, "training vectors")
        if len(x) == 0:
            raise IndexSpecError(f"cannot train index spec {self._spec!r} on 0 vectors; pass the corpus vectors")
        self._resolve(len(x))
        if self._index.is_trained:
            return
        ivf = _ivf_of(self._index)
        if ivf is not None and len(x) < ivf.nlist:
            raise IndexSpecError(
                f"index spec {self._spec!r}: IVF{ivf.nlist} needs at least {ivf.nlist} vectors to train, "
                f"got {len(x)}: use 'auto' or fewer lists"
            )
        if ivf is not None and len(x) < MIN_POINTS_PER_LIST * ivf.nlist:
            logger.warning(
                "index spec %r: %d training vectors is fewer than %d per list for IVF%d; clusters will be poor, "
                "consider fewer lists", self._spec, len(x), MIN_POINTS_PER_LIST, ivf.nlist,
            )
        try:
            self._index.train(x)
        except RuntimeError as exc:
            raise IndexSpecError(
                f"cannot train index spec {self._spec!r} on {len(x)} vectors: {_faiss_reason(exc)}; "
                "use 'auto', a smaller codec, or more vectors"
            ) from exc

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` under ``ids`` (training on them first if untrained); ids must be new."""
        self._check_writable()
        x = _as_matrix(vectors, self._dim, "vectors")
        new_ids = _as_ids(ids, expected=len(x))
        if len(x) == 0:
            return
        unique, counts = np.unique(new_ids, return_counts=True)
        if (counts > 1).any():
            raise InvalidInputError(f"duplicate ids in one add: {unique[counts > 1][:5].tolist()}; ids must be unique")
        clash = new_ids[np.isin(new_ids, self._ids)]
        if len(clash):
            raise InvalidInputError(
                f"ids already in the index: {clash[:5].tolist()}; remove them first to replace their vectors"
            )
        if not self.is_trained:
            self.train(x)
        self._index.add_with_ids(x, new_ids)
        self._ids = np.union1d(self._ids, new_ids)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were present (absent ids are not counted, not an error)."""
        self._check_writable()
        present = np.unique(_as_ids(ids))
        present = present[np.isin(present, self._ids, assume_unique=True)]
        if len(present) == 0:
            return 0
        ivf = _ivf_of(self._index)
        hashtable = ivf is not None and ivf.direct_map.type == faiss.DirectMap.Hashtable
        # a hashtable direct map accepts only IDSelectorArray
        selector = faiss.IDSelectorArray(present) if hashtable else faiss.IDSelectorBatch(present)
        try:
            removed = int(self._index.remove_ids(selector))
        except RuntimeError as exc:
            raise InvalidInputError(
                f"index spec {self._spec!r} does not support deletion ({_faiss_reason(exc)}); "
                "rebuild with 'Flat' or an IVF spec to remove vectors"
            ) from exc
        assert removed == len(present), (removed, len(present))
        self._ids = np.setdiff1d(self._ids, present, assume_unique=True)
        self._gpu_index = None
        return removed

    # ---------------------------------------------------------------- searching
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed_ids: np.ndarray | None = None,
        nprobe: int | None = None,
        rescore_vectors: Callable[[np.ndarray], np.ndarray] | None = None,
        rescore_factor: int = 4,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids), each (n, k); a 1-D query gives (1, k). Missing results: id -1, score -inf.

        ``allowed_ids`` restricts results to those ids. ``rescore_vectors(ids) -> (len(ids), dim)`` turns
        on exact re-ranking: ``k * rescore_factor`` candidates are fetched and re-scored by inner product
        with the vectors it returns (in the order of the ids given).
        HNSW explores only ``efSearch`` nodes, so a narrow ``allowed_ids`` may return fewer than k results.
        """
        k = _positive_int(k, "k")
        rescore_factor = _positive_int(rescore_factor, "rescore_factor")
        q = _as_matrix(queries, self._dim, "queries", allow_1d=True)
        probe = None if nprobe is None else _positive_int(nprobe, "nprobe")
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        allowed = None
        if allowed_ids is not None:
            allowed = np.unique(_as_ids(allowed_ids, "allowed_ids"))
            allowed = allowed[np.isin(allowed, self._ids, assume_unique=True)]
        available = self.ntotal if allowed is None else len(allowed)
        if len(q) == 0 or available == 0:
            return scores, ids
        fetch = min(available, k if rescore_vectors is None else k * rescore_factor)
        selector = None if allowed is None else faiss.IDSelectorBatch(allowed)  # kept alive through the call
        ivf = _ivf_of(self._index)
        if ivf is not None:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, probe or self.nprobe))
        else:
            params = None if selector is None else faiss.SearchParameters(sel=selector)
        index = self._index
        if self._use_gpu and selector is None and max(fetch, getattr(params, "nprobe", 0)) <= _GPU_MAX_K:
            index = self._gpu_clone() or index
        with _few_query_threads(len(q)):
            found_scores, found_ids = index.search(q, fetch, params=params)
        found_scores[found_ids < 0] = -np.inf
        if rescore_vectors is not None:
            found_scores, found_ids = self._rescore(q, found_ids, rescore_vectors)
        m = min(k, found_ids.shape[1])
        scores[:, :m] = found_scores[:, :m]
        ids[:, :m] = found_ids[:, :m]
        return scores, ids

    def _rescore(
        self, q: np.ndarray, candidates: np.ndarray, fetch_vectors: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        valid = candidates >= 0
        unique, inverse = np.unique(candidates[valid], return_inverse=True)
        exact = np.full(candidates.shape, -np.inf, dtype=np.float32)
        if len(unique):
            vectors = np.asarray(fetch_vectors(unique), dtype=np.float32)
            if vectors.shape != (len(unique), self._dim):
                raise InvalidInputError(
                    f"rescore_vectors returned shape {vectors.shape} for {len(unique)} ids; "
                    f"it must return one {self._dim}-dim vector per id, in the order given"
                )
            rows = np.nonzero(valid)[0]
            exact[valid] = np.einsum("ij,ij->i", vectors[inverse.ravel()], q[rows])
        order = np.argsort(-exact, axis=1, kind="stable")
        return np.take_along_axis(exact, order, 1), np.take_along_axis(candidates, order, 1)

    # ---------------------------------------------------------------- persistence
    def nbytes(self) -> int:
        """Size of the index file :meth:`save` writes (serialises the index to measure it)."""
        if self._mapped_from is not None:
            return os.path.getsize(self._mapped_from[0])
        return 0 if self._index is None else int(faiss.serialize_index(self._index).nbytes)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically: a temporary file beside it, fsync, rename over."""
        if self._index is None:
            raise InvalidInputError(f"nothing to save to {os.fspath(path)}: the 'auto' index is not built; add vectors first")
        path = os.fspath(path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            if self._mapped_from is not None:
                # a mmapped index would be written as a stub pointing at its source file: copy the source instead
                source, signature = self._mapped_from
                if self._file_signature(source) != signature:
                    raise IndexFormatError(
                        f"{source} changed on disk since this index was memory-mapped from it; load it again"
                    )
                shutil.copyfile(source, tmp)
            else:
                faiss.write_index(self._index, tmp)
            fsync_path(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        if os.name == "posix":  # make the rename itself durable
            fsync_path(os.path.dirname(os.path.abspath(path)))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = True, writable: bool = False, use_gpu: bool | None = None
    ) -> VectorIndex:
        """Read an index saved by :meth:`save`.

        With ``mmap`` an IVF index's lists stay on disk (memory-mapped); faiss cannot modify such lists
        (a failed add leaves the index unusable), so the index is read-only. ``writable=True`` loads it
        into memory instead so ``add``/``remove`` work. Non-IVF indexes are always read into memory.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise IndexFormatError(f"no index file at {path}; check the path or rebuild the index")
        flags = faiss.IO_FLAG_MMAP if mmap and not writable else 0
        try:
            index = faiss.read_index(path, flags)
        except RuntimeError as exc:
            raise IndexFormatError(
                f"cannot read the FAISS index at {path} ({_faiss_reason(exc)}): the file is truncated or not "
                "a FAISS index; rebuild the index"
            ) from exc
        obj = cls(int(index.d), "auto", use_gpu=use_gpu)
        obj._index = index
        obj._adopt_loaded(path)
        return obj

    def _adopt_loaded(self, path: str) -> None:
        index = self._index
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise IndexFormatError(f"the FAISS index at {path} does not use inner product; rebuild the index")
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
        ivf = _ivf_of(inner)
        if _has_refine(inner) or (isinstance(index, faiss.IndexIDMap) and ivf is not None):
            raise IndexFormatError(f"the FAISS index at {path} wraps IVF or refinement in IndexIDMap; rebuild the index")
        if isinstance(index, faiss.IndexIDMap):
            self._ids = np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
        elif ivf is not None:
            self._ids = np.sort(self._ivf_ids(ivf))
            if not _uses_block_lists(ivf) and ivf.direct_map.type != faiss.DirectMap.Hashtable:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            if isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists):
                self._mapped_from = (path, self._file_signature(path))
        else:
            raise IndexFormatError(f"the FAISS index at {path} holds no caller ids; rebuild it with VectorIndex")
        try:
            from faiss.contrib.factory_tools import reverse_index_factory

            self._spec = reverse_index_factory(inner)
        except Exception:  # noqa: BLE001 - a description only; unknown layouts keep a generic name
            self._spec = type(inner).__name__

    @staticmethod
    def _ivf_ids(ivf: faiss.IndexIVF) -> np.ndarray:
        parts = [np.empty(0, dtype=np.int64)]
        invlists = ivf.invlists
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                ptr = invlists.get_ids(list_no)
                parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))
                invlists.release_ids(list_no, ptr)
        return np.concatenate(parts)

    @staticmethod
    def _file_signature(path: str) -> tuple[int, int, int]:
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    # ---------------------------------------------------------------- helpers
    def _resolve(self, n_vectors: int) -> None:
        if self._index is None:
            self._spec = resolve_auto_spec(n_vectors, self._dim)
            logger.info("index spec 'auto' resolved to %r for %d vectors", self._spec, n_vectors)
            self._index = _build_faiss_index(self._spec, self._dim)

    def _check_writable(self) -> None:
        if self._mapped_from is not None:
            raise InvalidInputError(
                f"this index is memory-mapped read-only from {self._mapped_from[0]}; "
                "load it with VectorIndex.load(path, writable=True) to add or remove vectors"
            )

    @staticmethod
    def _want_gpu(use_gpu: bool | None) -> bool:
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if use_gpu and gpus == 0:
            raise MissingDependencyError(
                "use_gpu=True but faiss sees no GPU: install the 'gpu' extra (pip install 'deepseek-rag[gpu]') "
                "on a CUDA machine, or pass use_gpu=None"
            )
        return gpus > 0 if use_gpu is None else bool(use_gpu)

    def _gpu_clone(self) -> faiss.Index | None:
        if self._gpu_index is None and not self._gpu_failed:
            try:
                if self._gpu_resources is None:
                    self._gpu_resources = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
            except (RuntimeError, AttributeError) as exc:
                logger.warning("cannot move index %r to the GPU (%s); searching on the CPU", self._spec, exc)
                self._gpu_failed = True
        return self._gpu_index
