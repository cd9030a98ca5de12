"""The FAISS factory-string policy: what ``"auto"`` builds, how many IVF lists, how many are probed, and which
factory strings this library can hold ids in.

A short string describes a whole index (``"IVF1024,SQ8"``), as faiss's ``index_factory`` does; search-time
knobs (``nprobe``) stay separate. Plain functions; the store itself is ``faiss_store.py``.
"""

from __future__ import annotations

import logging
import math
import re

import faiss

from ..errors import IndexSpecError, InvalidInputError

logger = logging.getLogger(__name__)

AUTO_IVF_THRESHOLD = 50_000
"""``"auto"`` builds exact ``"Flat"`` below this many vectors and a quantized IVF index from it on."""

AUTO_IVF_CODEC = "PQ{half}x4fs,Refine(SQ8)"
"""Codec of the ``"auto"`` IVF index (``{half}`` = dim/2): two-level, 4-bit fast-scan PQ in RAM (dim/2 bytes a
vector) re-ranked with SQ8 codes memory-mapped from disk, ``nprobe`` and ``k_factor`` calibrated at build time.
benchmarks/scale.py, 1M vectors drawn like real all-MiniLM-L6-v2 chunk vectors, 2 busy cores: Recall@10 0.968
at nprobe 128, k_factor 16 (p50 0.8 ms, p99 6.6 ms) with 125 B/chunk in RAM, where ``SQ8`` (the codec before
it) holds 422 B/chunk for 0.973 (p50 3.1 ms, p99 8.8 ms). An odd ``dim`` gets :data:`FALLBACK_IVF_CODEC`.
On a GPU, fast-scan codes cannot move to the device: pass ``IVF...,SQ8`` there."""

FALLBACK_IVF_CODEC = "SQ8"
"""The ``"auto"`` IVF codec for an odd dimension (no dim/2 sub-quantizers): 8-bit scalar quantization."""

MIN_POINTS_PER_LIST = 39
"""FAISS k-means wants at least this many training vectors per IVF list."""


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
    codec = AUTO_IVF_CODEC.format(half=dim // 2) if dim % 2 == 0 else FALLBACK_IVF_CODEC
    return f"IVF{suggest_nlist(n_vectors)},{codec}"


def check_training_size(spec: str, ivf: faiss.IndexIVF | None, n_vectors: int) -> None:
    """Refuse fewer training vectors than IVF lists; warn below :data:`MIN_POINTS_PER_LIST` per list."""
    if ivf is not None and n_vectors < ivf.nlist:
        raise IndexSpecError(
            f"index spec {spec!r}: IVF{ivf.nlist} needs at least {ivf.nlist} vectors to train, "
            f"got {n_vectors}: use 'auto' or fewer lists"
        )
    if ivf is not None and n_vectors < MIN_POINTS_PER_LIST * ivf.nlist:
        logger.warning(
            "index spec %r: %d training vectors is fewer than %d per list for IVF%d; clusters will be poor, "
            "consider fewer lists", spec, n_vectors, MIN_POINTS_PER_LIST, ivf.nlist,
        )


def default_nprobe(nlist: int) -> int:
    """Lists probed when the caller sets none: nlist/32, at least 32, at most nlist.

    benchmarks/scale.py (SQ8 codes, vectors like real MiniLM ones) needed 32 of 1,024 lists at 100k vectors and
    128 of 4,096 at 1M for Recall@10 ≥ 0.95 vs exact; on SciFact chunk vectors IVF128 kept 98% of Flat's
    nDCG@10 at 32 lists.
    """
    return min(nlist, max(32, nlist // 32))


DEFAULT_K_FACTOR = 8
"""Re-rank depth of a two-level spec (``k × k_factor`` candidates re-scored) when no calibration chose one:
benchmarks/index_specs.py (100k vectors like real MiniLM ones, PQ192x4fs first pass, SQ8 codes) gained
nothing past 8."""

_REFINE_SUFFIX = re.compile(r",(?:RFlat|Refine\(([^()]*)\))$")


def split_refine(spec: str) -> tuple[str, str | None]:
    """(first-pass spec, re-ranking codec or None): ``"IVF4096,PQ192x4fs,Refine(SQ8)"`` gives
    ``("IVF4096,PQ192x4fs", "SQ8")``; faiss's ``",RFlat"`` is ``",Refine(Flat)"`` (exact re-ranking)."""
    match = _REFINE_SUFFIX.search(spec)
    if match is None:
        return spec, None
    return spec[: match.start()], (match.group(1) if match.group(1) is not None else "Flat").strip()


def faiss_reason(exc: BaseException) -> str:
    """The human part of a faiss C++ exception ("could not parse index string X")."""
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = re.search(r"\.(?:cpp|h):\d+: (.*)", line)
    reason = match.group(1) if match else line
    return reason.split("failed: ", 1)[-1].strip()


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def has_refine(index: faiss.Index) -> bool:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        return True
    return isinstance(index, faiss.IndexPreTransform) and has_refine(index.index)


def uses_block_lists(ivf: faiss.IndexIVF) -> bool:
    return isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.BlockInvertedLists)


def _skip_polysemous_training(index: faiss.Index) -> None:
    """Turn off faiss's default polysemous training of 8-bit PQ: ~5 s per sub-quantizer, unused by search."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    for part in (index, faiss.downcast_index(index.storage) if hasattr(index, "storage") else None):
        if hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False


def build_faiss_index(spec: str, dim: int, *, full_spec: str | None = None) -> faiss.Index:
    """The faiss index of ``spec``, ready to hold caller ids; ``full_spec`` (the spec with its ``Refine(...)``
    part, when ``spec`` is a two-level spec's first pass) is what errors name."""
    shown = full_spec or spec
    if "IDMap" in spec:
        raise IndexSpecError(f"index spec {shown!r}: VectorIndex manages ids itself; drop 'IDMap' from the spec")
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexSpecError(
            f"cannot build index spec {shown!r} for {dim}-dim vectors: {faiss_reason(exc)}; "
            "fix the factory string or use 'auto'"
        ) from exc
    if has_refine(index):
        raise IndexSpecError(
            f"index spec {shown!r}: refinement (',RFlat' / ',Refine(...)') is supported once, at the end of the "
            "spec (e.g. 'IVF1024,PQ192x4fs,Refine(SQ8)')"
        )
    _skip_polysemous_training(index)
    ivf = ivf_of(index)
    if ivf is None:
        return faiss.IndexIDMap2(index)
    if not uses_block_lists(ivf):
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index
