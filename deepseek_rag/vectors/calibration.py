"""Choosing an index's search knobs at build time: the ``nprobe`` (IVF lists probed) and ``k_factor``
(re-rank depth of a two-level spec) that reach a recall target, measured on held-out vectors.

A fixed rule (nlist/32) is right for one corpus and wrong for the next. Here a few hundred of the corpus's own
vectors are held out — never returned by the searches that measure them (excluded by id), so they act as
queries the index has not seen — and each setting's Recall@k against exact search over the rest is measured.
Of the settings that reach the target the cheapest is kept, by an estimate of the bytes a query reads:
``nprobe / nlist × N × code_size`` for the first pass plus ``k × k_factor × refine_code_size × 2`` for
re-ranking (scattered rows, decoded). The choice and what it reached are saved in the version record;
:class:`VectorSearchSettings` fixes either knob instead, and a search's own ``params`` override both.

Held-out corpus vectors are easier queries than real ones: on SciFact, the setting where they reach Recall@10
0.963 gives real queries 0.906 (benchmarks/index_specs.py), hence the default target of 0.98.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InvalidInputError
from .base import IdFilter

logger = logging.getLogger(__name__)

_REFINE_READ_COST = 2.0  # a re-ranked row costs about twice its bytes scanned in a list (random read + decode)
_K_FACTORS = (1, 2, 4, 8, 16, 32)
_MIN_QUERIES = 20
CEILING_TOLERANCE = 0.005
"""A target out of reach takes the cheapest setting within this much of the best recall measured (probing every
list at the deepest re-ranking), not that most thorough and slowest setting itself."""


@dataclass
class VectorSearchSettings(Config):
    """How an IVF or two-level index picks its search knobs at build time; saved with the index settings."""

    recall_target: float = field(
        default=0.98,
        metadata={"help": "Recall@10 against exact search, on held-out corpus vectors, that the chosen nprobe and "
                          "k_factor must reach (real queries reach a little less; see vectors/calibration.py)."},
    )
    calibration_queries: int = field(
        default=500, metadata={"help": "Corpus vectors held out to measure recall (at most a tenth of the corpus)."}
    )
    nprobe: int | None = field(default=None, metadata={"help": "Fix the IVF lists probed instead of choosing them."})
    k_factor: int | None = field(
        default=None, metadata={"help": "Fix the re-rank depth (k × k_factor candidates) instead of choosing it."}
    )

    def __post_init__(self) -> None:
        target = self.recall_target
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise InvalidInputError(f"VectorSearchSettings.recall_target={target!r} must be in (0, 1]")
        for name in ("calibration_queries", "nprobe", "k_factor"):
            value = getattr(self, name)
            if value is None and name != "calibration_queries":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"VectorSearchSettings.{name}={value!r} must be a whole number >= 1")


def calibrate(
    stores: Sequence[Any], ids: np.ndarray, vectors: np.ndarray, settings: VectorSearchSettings | None = None,
    *, k: int = 10, seed: int = 0,
) -> dict[str, Any] | None:
    """The cheapest ``{"nprobe", "k_factor"}`` reaching ``settings.recall_target`` over ``stores`` (which hold
    ``ids`` → ``vectors`` between them), with what was measured; None when there is nothing to choose (no IVF,
    no re-ranking) or too few vectors to hold some out. Stores are searched as an index searches its segments."""
    settings = settings or VectorSearchSettings()
    first = stores[0]
    nlist, refined = first.nlist, first.refined
    if nlist is None and not refined:
        return None
    n = len(ids)
    count = min(settings.calibration_queries, n // 10)
    if count < _MIN_QUERIES or n - count < k:
        logger.info("%d vectors are too few to calibrate the search of %r; using the defaults", n, first.spec)
        return None
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(n, count, replace=False))
    queries = np.ascontiguousarray(vectors[held], dtype=np.float32)
    truth = _exact_top_k(queries, vectors, held, ids, k)
    filters = [IdFilter.of(excluded=ids[held]) for _ in stores]  # one per store: a filter caches per-store counts
    measured: dict[tuple[int | None, int | None], float] = {}

    def recall(nprobe: int | None, k_factor: int | None) -> float:
        if (nprobe, k_factor) not in measured:
            params = {key: value for key, value in (("nprobe", nprobe), ("k_factor", k_factor)) if value is not None}
            found = _search_all(stores, filters, queries, k, params)
            measured[(nprobe, k_factor)] = float(np.mean([len(np.intersect1d(f, t)) / k for f, t in zip(found, truth)]))
        return measured[(nprobe, k_factor)]

    probes = [settings.nprobe] if settings.nprobe is not None else _probe_grid(nlist)
    factors = [settings.k_factor] if settings.k_factor is not None else (list(_K_FACTORS) if refined else [None])
    code_bytes = _bytes_per_probe(first, n, nlist)
    refine_bytes = first._refine.code_size * _REFINE_READ_COST if refined else 0.0

    def cost(nprobe: int | None, k_factor: int | None) -> float:
        return (nprobe or 0) * code_bytes + k * (k_factor or 0) * refine_bytes

    def cheapest(target: float) -> tuple[float, int | None, int | None] | None:
        best: tuple[float, int | None, int | None] | None = None
        floor = 0  # deeper re-ranking never needs more lists, so shallower depths start where deeper ones ended
        for k_factor in reversed(factors):
            for position in range(floor, len(probes)):
                nprobe = probes[position]
                if best is not None and cost(nprobe, k_factor) >= best[0]:
                    break
                if recall(nprobe, k_factor) >= target:
                    best, floor = (cost(nprobe, k_factor), nprobe, k_factor), position
                    break
            if best is None:  # not even the deepest re-ranking reaches it: shallower ones will not
                break
        return best

    best, ceiling = cheapest(settings.recall_target), None
    if best is None:  # out of reach (the re-ranking codes' own error, say): close to the best there is, cheaply
        ceiling = recall(probes[-1], factors[-1])
        best = cheapest(ceiling - CEILING_TOLERANCE)
        far = ceiling < settings.recall_target - 0.01  # SQ8 re-ranking codes at 1M top out at ~0.979: not news
        logger.log(logging.WARNING if far else logging.INFO,
                   "index %r reaches Recall@%d %.3f at most (target %.3f); using the cheapest setting within "
                   "%.3f of that: nprobe %s, k_factor %s", first.spec, k, ceiling, settings.recall_target,
                   CEILING_TOLERANCE, best[1], best[2])
    _, nprobe, k_factor = best
    result = {"nprobe": nprobe, "k_factor": k_factor, f"recall@{k}": round(recall(nprobe, k_factor), 4),
              "target": settings.recall_target, "queries": count, "k": k, "settings_tried": len(measured)}
    if ceiling is not None:
        result["ceiling"] = round(ceiling, 4)
    logger.info("search of %r calibrated on %d held-out vectors: %s", first.spec, count, result)
    return result


def calibrate_template(
    template: Any, stores: Sequence[Any], ids: np.ndarray, vectors: np.ndarray, settings: VectorSearchSettings | None
) -> None:
    """Set ``template``'s (an index's) ``nprobe`` / ``k_factor`` and ``calibration`` from :func:`calibrate` over
    ``stores``; fixed values in ``settings`` win."""
    settings = settings or VectorSearchSettings()
    result = calibrate(stores, ids, vectors, settings) if len(ids) else None
    template.calibration = result
    if result is not None:
        template.nprobe, template.k_factor = result["nprobe"], result["k_factor"]
    if settings.nprobe is not None:
        template.nprobe = settings.nprobe
    if settings.k_factor is not None:
        template.k_factor = settings.k_factor


def _probe_grid(nlist: int | None) -> list[int | None]:
    if nlist is None:
        return [None]
    grid, p = [], 1
    while p < nlist:
        grid.append(p)
        p *= 2
    return [*grid, nlist]


def _bytes_per_probe(store: Any, n: int, nlist: int | None) -> float:
    if nlist is None:
        return 0.0
    code_size = getattr(store._ivf, "code_size", 0) or 1
    return n / nlist * code_size


def _exact_top_k(queries: np.ndarray, vectors: np.ndarray, held: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Ids of each query's exact top-k among the vectors not held out (blocks of rows, so memory stays flat)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), 65536):
        block = np.asarray(vectors[start : start + 65536], dtype=np.float32)
        scores = queries @ block.T
        mine = held[(held >= start) & (held < start + len(block))] - start
        scores[:, mine] = -np.inf
        rows = np.arange(start, start + len(block))
        if scores.shape[1] > k:
            top = np.argpartition(-scores, k, axis=1)[:, :k]
            scores, rows = np.take_along_axis(scores, top, 1), rows[top]
        else:
            rows = np.broadcast_to(rows, scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        if best_scores.shape[1] > k:
            top = np.argpartition(-best_scores, k, axis=1)[:, :k]
            best_scores, best_rows = np.take_along_axis(best_scores, top, 1), np.take_along_axis(best_rows, top, 1)
    return ids[best_rows]


def _search_all(stores: Sequence[Any], filters: Sequence[IdFilter], queries: np.ndarray, k: int, params: dict) -> np.ndarray:
    scores, found = [], []
    for store, id_filter in zip(stores, filters):
        if len(store):
            s, i = store.search(queries, k, filter=id_filter, params=params)
            scores.append(s)
            found.append(i)
    s, i = np.concatenate(scores, axis=1), np.concatenate(found, axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(i, order, 1)
