"""Merge ranked lists from several retrievers (dense vectors, BM25) into one ranking.

Two rules, both over lists of ``(key, score)`` pairs, best first; keys are chunk ids or document ids:

* **Reciprocal-rank fusion** (Cormack et al., 2009): ``Σ_i w_i · 1 / (k + rank_i)`` with ranks from 1
  and ``k = 60``. It reads only ranks, so it needs no calibration between a cosine in [-1, 1] and an
  unbounded BM25 score. A key missing from a list gets nothing from it.
* **Weighted score fusion**: ``Σ_i w_i · norm_i(score)`` with each list's scores normalised per query.
  ``minmax`` maps a list's best score to 1 and its worst to 0; a key missing from a list counts 0 there,
  as if ranked at that list's bottom. ``zscore`` centres and scales by the list's mean and deviation; a
  missing key gets the list's lowest z-score. Min-max is the default: a BM25 list is short and skewed
  (a few strong matches, a long tail), so its mean and deviation describe the tail more than the top,
  while min-max keeps both sides on the same [0, 1] scale whatever the query length. It is what
  Weaviate's ``relativeScoreFusion`` and LlamaIndex's ``relative_score`` fusion do.

Ties are broken by first appearance, reading the lists from the heaviest weight down (the first list
first among equal weights), so results are deterministic and a zero-weight list decides nothing.
This module knows nothing about indexes; ``retriever.py`` feeds it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Ranking = Sequence[tuple[K, float]]

FUSIONS = ("rrf", "weighted")
NORMALIZATIONS = ("minmax", "zscore")
DEFAULT_RRF_K = 60


def _check_weights(rankings: Sequence[Ranking], weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(rankings)
    weights = [float(w) for w in weights]
    if len(weights) != len(rankings):
        raise InvalidInputError(f"{len(weights)} weights for {len(rankings)} ranked lists; give one weight per list")
    if any(w < 0 or math.isnan(w) for w in weights):
        raise InvalidInputError(f"weights {weights} must be numbers >= 0")
    return weights


def _sorted(scores: dict[K, float], rankings: Sequence[Ranking], weights: list[float]) -> list[tuple[K, float]]:
    order: dict[K, int] = {}
    for i in sorted(range(len(rankings)), key=lambda i: -weights[i]):
        for key, _ in rankings[i]:
            order.setdefault(key, len(order))
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def reciprocal_rank_fusion(
    rankings: Sequence[Ranking], *, k: int = DEFAULT_RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """``(key, Σ w_i / (k + rank_i))`` best first; with unit weights, the textbook RRF score."""
    if k < 0:
        raise InvalidInputError(f"rrf k={k} must be 0 or more (60 is the usual choice)")
    weights = _check_weights(rankings, weights)
    fused: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, (key, _) in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return _sorted(fused, rankings, weights)


def normalize_scores(ranking: Ranking, method: str = "minmax") -> tuple[dict[K, float], float]:
    """One list's scores normalised, and the value a key missing from it gets."""
    if method not in NORMALIZATIONS:
        raise InvalidInputError(f"normalization={method!r} is not one of {', '.join(NORMALIZATIONS)}")
    if not ranking:
        return {}, 0.0
    scores = [float(s) for _, s in ranking]
    if method == "minmax":
        low, high = min(scores), max(scores)
        span = high - low
        # A list whose scores are all equal (or a single hit) says only "these match": each gets 1.
        return {key: (s - low) / span if span > 0 else 1.0 for (key, _), s in zip(ranking, scores)}, 0.0
    mean = sum(scores) / len(scores)
    deviation = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    normalized = {key: (s - mean) / deviation if deviation > 0 else 0.0 for (key, _), s in zip(ranking, scores)}
    return normalized, min(normalized.values())


def weighted_score_fusion(
    rankings: Sequence[Ranking], weights: Sequence[float] | None = None, *, normalization: str = "minmax"
) -> list[tuple[K, float]]:
    """``(key, Σ w_i · norm_i(score))`` best first, each list normalised on its own (see the module docstring)."""
    weights = _check_weights(rankings, weights)
    normalized = [normalize_scores(ranking, normalization) for ranking in rankings]
    keys: dict[K, None] = {}
    for ranking in rankings:
        keys.update((key, None) for key, _ in ranking)
    fused = dict.fromkeys(keys, 0.0)
    for w, (scores, missing) in zip(weights, normalized):
        for key in fused:
            fused[key] += w * scores.get(key, missing)
    return _sorted(fused, rankings, weights)


def fuse(
    rankings: Sequence[Ranking],
    method: str,
    weights: Sequence[float] | None = None,
    *,
    rrf_k: int = DEFAULT_RRF_K,
    normalization: str = "minmax",
) -> list[tuple[K, float]]:
    """Dispatch to :func:`reciprocal_rank_fusion` (``"rrf"``) or :func:`weighted_score_fusion` (``"weighted"``)."""
    if method == "rrf":
        return reciprocal_rank_fusion(rankings, k=rrf_k, weights=weights)
    if method == "weighted":
        return weighted_score_fusion(rankings, weights, normalization=normalization)
    raise InvalidInputError(f"fusion={method!r} is not one of {', '.join(FUSIONS)}")
