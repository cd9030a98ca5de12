"""From ranked chunk ids to results: hits built from stored chunks, and document scores from their chunks' scores.

A ranking is a list of ``(chunk id, score)`` pairs, best first. :func:`aggregate_document_scores` turns the scores
of one document's chunks into one (``max``, ``softmax`` or ``topk_sum``); :func:`document_ranking` ranks one
side's documents that way. It does not search or fuse (``fusion.py``).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..documents import Hit
from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

AGGREGATIONS = ("max", "softmax", "topk_sum")

Ranking = list[tuple[int, float]]


def aggregate_document_scores(scores: Sequence[float], rule: str, temperature: float = 0.05, k: int = 2) -> float:
    """One document score from its chunks' scores (sorted or not).

    ``max``: the best chunk. ``softmax``: ``τ·log Σ exp(s/τ)`` — the best chunk plus a bonus for other
    strong chunks, approaching max as τ → 0. ``topk_sum``: mean of the best ``k`` (missing ones count 0).
    """
    ordered = sorted(scores, reverse=True)
    if rule == "max":
        return ordered[0]
    if rule == "softmax":
        top = ordered[0]
        return top + temperature * math.log(sum(math.exp((s - top) / temperature) for s in ordered))
    if rule == "topk_sum":
        return sum(ordered[:k]) / k
    raise InvalidInputError(f"aggregation {rule!r} is not one of {', '.join(AGGREGATIONS)}")


def ranking_of(scores: np.ndarray, ids: np.ndarray) -> Ranking:
    """One row of a search's (scores, ids) as a ranking; ids of -1 (nothing found) are left out."""
    return [(int(i), float(s)) for s, i in zip(scores, ids) if i >= 0]


def document_ranking(ranking: Ranking, chunks: Mapping[int, Any], rule: str) -> list[tuple[str, float]]:
    """One side's documents, best first, each scored from that side's chunk scores by ``rule``."""
    by_doc: dict[str, list[float]] = defaultdict(list)
    for chunk_id, score in ranking:
        if chunk_id in chunks:
            by_doc[chunks[chunk_id].doc_id].append(score)
    scored = [(doc_id, aggregate_document_scores(scores, rule)) for doc_id, scores in by_doc.items()]
    return sorted(scored, key=lambda item: -item[1])


def hit_from_chunk(chunk: Any, score: float) -> Hit:
    """The :class:`Hit` for a stored chunk found with ``score``."""
    return Hit(
        chunk_id=int(chunk.id), doc_id=chunk.doc_id, score=score, start=chunk.start, end=chunk.end,
        text=chunk.text, ordinal=chunk.ordinal, section=chunk.section, metadata=chunk.metadata,
    )
