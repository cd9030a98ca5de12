"""Retriever: a query in, ranked chunk hits (or documents) out, with their place in the source.

query → encode (query side) → FAISS search (+ metadata filter) → chunk hits → optional aggregation to
documents → optional neighbour expansion. Scores are inner products of unit vectors: higher is better.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .document_index import DocumentIndex
from .errors import InvalidInputError

logger = logging.getLogger(__name__)

MAX_TOP_K = 10_000
MAX_QUERY_CHARS = 20_000
AGGREGATIONS = ("max", "softmax", "topk_sum")
LEVELS = ("chunk", "document")


@dataclass
class Hit:
    """One retrieved chunk: ``text == document.text[start:end]``; ``score`` is higher-is-better."""

    chunk_id: int
    doc_id: str
    score: float
    start: int
    end: int
    text: str
    ordinal: int
    section: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DocumentHit:
    """One retrieved document, scored from its chunks; ``hits`` are its best chunks, best first."""

    doc_id: str
    score: float
    hits: list[Hit]
    metadata: dict[str, Any] = field(default_factory=dict)


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


class Retriever:
    """Search a :class:`DocumentIndex` by text.

    ``expand_neighbors=n`` widens every hit to the span of its ``n`` neighbouring chunks on each side;
    ``candidate_factor`` is how many more chunks than requested are fetched before grouping by document.
    """

    def __init__(
        self,
        index: DocumentIndex,
        *,
        top_k: int = 10,
        level: str = "chunk",
        aggregation: str = "max",
        expand_neighbors: int = 0,
        candidate_factor: int = 5,
        nprobe: int | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.top_k = _check_top_k(top_k)
        self.level = _check_choice("level", level, LEVELS)
        self.aggregation = _check_choice("aggregation", aggregation, AGGREGATIONS)
        if expand_neighbors < 0:
            raise InvalidInputError(f"expand_neighbors={expand_neighbors} must be 0 or more")
        if candidate_factor < 1:
            raise InvalidInputError(f"candidate_factor={candidate_factor} must be at least 1")
        self.expand_neighbors = expand_neighbors
        self.candidate_factor = candidate_factor
        self.nprobe = nprobe
        self.filters = dict(filters or {})

    # ------------------------------------------------------------------------------------ public
    def retrieve(
        self, query: str, top_k: int | None = None, *, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``top_k`` best chunks for ``query``, best first."""
        return self.retrieve_batch([query], top_k, filters=filters)[0]

    def retrieve_batch(
        self, queries: Sequence[str], top_k: int | None = None, *, filters: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        """:meth:`retrieve` for many queries, encoded in one batch."""
        k = _check_top_k(top_k if top_k is not None else self.top_k)
        vectors = self.index.encoder.encode_queries(_check_queries(queries))
        return self.search_by_vectors(vectors, k, filters=filters)

    def retrieve_documents(
        self,
        query: str,
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> list[DocumentHit]:
        """The ``top_k`` best documents for ``query``, each scored from its chunks."""
        return self.retrieve_documents_batch([query], top_k, filters=filters, aggregation=aggregation)[0]

    def retrieve_documents_batch(
        self,
        queries: Sequence[str],
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> list[list[DocumentHit]]:
        vectors = self.index.encoder.encode_queries(_check_queries(queries))
        return self.documents_by_vectors(vectors, top_k, filters=filters, aggregation=aggregation)

    def documents_by_vectors(
        self,
        vectors: np.ndarray,
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
    ) -> list[list[DocumentHit]]:
        """Document hits for already-encoded query vectors (n, dim)."""
        k = _check_top_k(top_k if top_k is not None else self.top_k)
        rule = _check_choice("aggregation", aggregation or self.aggregation, AGGREGATIONS)
        chunk_k = min(MAX_TOP_K, k * self.candidate_factor)
        per_query = self.search_by_vectors(vectors, chunk_k, filters=filters, expand=False)
        return [self._group(hits, k, rule) for hits in per_query]

    def search_by_vectors(
        self,
        vectors: np.ndarray,
        top_k: int,
        *,
        filters: Mapping[str, Any] | None = None,
        expand: bool = True,
    ) -> list[list[Hit]]:
        """Chunk hits for already-encoded query vectors (n, dim)."""
        merged = {**self.filters, **(filters or {})}
        scores, ids = self.index.search_vectors(vectors, top_k, filters=merged or None, nprobe=self.nprobe)
        chunks = self.index.store.get_chunks(np.unique(ids[ids >= 0]).tolist())
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = [
                _hit(chunks[int(i)], float(s)) for s, i in zip(row_scores, row_ids) if i >= 0 and int(i) in chunks
            ]
            if expand and self.expand_neighbors:
                hits = [self._expand(h) for h in hits]
            results.append(hits)
        return results

    # ------------------------------------------------------------------------------------ helpers
    def _group(self, hits: list[Hit], k: int, rule: str) -> list[DocumentHit]:
        by_doc: dict[str, list[Hit]] = defaultdict(list)
        for hit in hits:
            by_doc[hit.doc_id].append(hit)
        docs = [
            DocumentHit(doc_id, aggregate_document_scores([h.score for h in group], rule), group, group[0].metadata)
            for doc_id, group in by_doc.items()
        ]
        docs.sort(key=lambda d: d.score, reverse=True)
        docs = docs[:k]
        if self.expand_neighbors:
            for doc in docs:
                doc.hits = [self._expand(h) for h in doc.hits]
        return docs

    def _expand(self, hit: Hit) -> Hit:
        n = self.expand_neighbors
        window = self.index.store.chunks_of(hit.doc_id, hit.ordinal - n, hit.ordinal + n)
        if len(window) <= 1:
            return hit
        start, end = min(c.start for c in window), max(c.end for c in window)
        text = self.index.store.document_span(hit.doc_id, start, end)
        return Hit(hit.chunk_id, hit.doc_id, hit.score, start, end, text, hit.ordinal, hit.section, hit.metadata)


def _hit(chunk: Any, score: float) -> Hit:
    return Hit(
        chunk_id=int(chunk.id), doc_id=chunk.doc_id, score=score, start=chunk.start, end=chunk.end,
        text=chunk.text, ordinal=chunk.ordinal, section=chunk.section, metadata=chunk.metadata,
    )


def _check_top_k(top_k: Any) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise InvalidInputError(f"top_k must be a whole number, got {top_k!r}")
    if top_k <= 0:
        raise InvalidInputError(f"top_k={top_k} must be at least 1")
    if top_k > MAX_TOP_K:
        raise InvalidInputError(f"top_k={top_k} is too large; ask for at most {MAX_TOP_K} results")
    return int(top_k)


def _check_queries(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str):
        raise InvalidInputError("pass a list of queries to the batch methods (wrap one query: [query])")
    checked = []
    for query in queries:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query {query!r} is empty; give some text to search for")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInputError(
                f"query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,} (the encoder reads only its "
                "first few hundred tokens). Shorten it, or index the text and search with a question about it."
            )
        checked.append(query)
    return checked


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInputError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value
