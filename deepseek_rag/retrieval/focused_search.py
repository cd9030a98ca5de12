"""The retriever's two-stage path under ``focus_documents``: rank documents, then the chunks of the chosen ones.

:class:`FocusedSearch` is the part of :class:`~deepseek_rag.retrieval.retriever.Retriever` that runs the focus
rule (``focus.py``) on one candidate search, ranks inside the documents it picks with the question part of the
query, and falls back to the plain ranking when a document cannot fill the answer. The searches, fusion and
hit widening it calls are the retriever's own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..documents import Hit
from ..vectors.filters import Filter
from .arguments import MAX_TOP_K
from .focus import FOCUS_AUTO, FocusDecision, decide_focus, explicit_focus
from .hits import Ranking, document_ranking, hit_from_chunk
from .protocol import IndexView

logger = logging.getLogger(__name__)


class FocusedSearch:
    """``focus_documents`` for :class:`~deepseek_rag.retrieval.retriever.Retriever` (see its docstring)."""

    def _may_focus(self, view: IndexView, k: int) -> bool:
        """Whether ``focus_documents`` can change the ``k`` hits: always for ``n >= 1``; under ``"auto"`` only when
        some document may hold ``k`` chunks (the rule's last condition), else the plain ranking is the answer
        and the rule is not run (a corpus of abstracts pays nothing for it)."""
        if self.focus_documents != FOCUS_AUTO:
            return bool(self.focus_documents)
        bound = getattr(view, "most_chunks_per_document", None)
        most = bound() if bound is not None else None
        return most is None or most >= k

    def _may_fill(self, view: IndexView, k: int, dense: list[Ranking], sparse: list[Ranking]) -> list[bool]:
        """Per query: whether one of its candidate chunks belongs to a document that may hold ``k`` chunks — the
        only documents the rule can focus on and keep (a query with none keeps its plain ranking)."""
        read = getattr(view, "long_document_chunk_ids", None)
        long_ids = None if read is None else read(k)
        if long_ids is None:
            return [True] * len(dense)
        return [bool(len(long_ids)) and bool(np.isin([i for i, _ in (*d, *s)], long_ids).any()) for d, s in zip(dense, sparse)]

    def _focused_chunk_hits(
        self, view: IndexView, queries: list[str], vectors: np.ndarray | None, k: int, filters: Mapping[str, Any] | None,
        mode: str, *, skip_short: bool = True,
    ) -> tuple[list[list[Hit]], list[FocusDecision]]:
        """Chunk hits under ``focus_documents`` (see ``Retriever``'s docstring), and the decision made for each query.
        ``skip_short``: queries whose candidates hold no document that can fill ``k`` skip the rule (same hits;
        their decision then says nothing rather than ``"short"``)."""
        auto = self.focus_documents == FOCUS_AUTO
        if auto:
            # One candidate search serves both rankings: the plain chunk list, and the documents the rule reads.
            want = self._candidates_wanted(k)
            depth = min(MAX_TOP_K, max(k, want) * self.candidate_factor)
            dense, sparse = self._side_rankings(view, queries, vectors, depth, filters, mode)
            dense, sparse = dense or [[]] * len(queries), sparse or [[]] * len(queries)
            may = self._may_fill(view, k, dense, sparse) if skip_short else [True] * len(queries)
            plain = [self._fuse(d, s, self._readable(q))[:want] if mode == "hybrid" else (d or s)[:want]
                     for q, d, s in zip(queries, dense, sparse)]
            chunks = view.get_chunks(sorted({i for row, (d, s) in enumerate(zip(dense, sparse))
                                             for i, _ in ((*d, *s) if may[row] else plain[row])}))
            ranked = [self._ranked_documents(q, d, s, chunks, mode)[:2] if may[row] else []
                      for row, (q, d, s) in enumerate(zip(queries, dense, sparse))]
            decisions = [
                decide_focus(q, [(doc, score, _title(chunks, doc, d, s)) for doc, score in docs],
                             min_gap=self.focus_min_gap if mode == "hybrid" and self.fusion == "weighted" else None)
                for q, docs, d, s in zip(queries, ranked, dense, sparse)
            ]
        else:
            found = self._document_hits(view, queries, vectors, self.focus_documents, filters, None, mode)
            decisions = [explicit_focus(q, [(d.doc_id, d.score, d.metadata.get("title")) for d in docs])
                         for q, docs in zip(queries, found)]
        question_vectors = self._question_vectors(queries, vectors, decisions, mode)
        results: list[list[Hit]] = []
        for i, (query, decision) in enumerate(zip(queries, decisions)):
            focused: list[Hit] = []
            if decision.focused:
                within = self._within_mode(query, decision, mode)
                inside = Filter.all_of(filters, {"doc_id": list(decision.doc_ids)})
                vector = None if question_vectors is None else question_vectors[i : i + 1]
                focused = self._chunk_hits(view, [decision.question], vector, k, inside, within, expand=True)[0]
            if not auto:
                results.append(focused)
            elif decision.focused and len(focused) >= k:
                results.append(focused)
            else:  # no focus, or a document too short to fill the answer: the plain ranking
                if decision.focused:
                    decisions[i] = FocusDecision((), query, "short")
                results.append(self._widen(view, [hit_from_chunk(chunks[c], score) for c, score in plain[i] if c in chunks], k))
        return results, decisions

    def _within_mode(self, query: str, decision: FocusDecision, mode: str) -> str:
        """How chunks are ranked inside focused documents: the retriever's mode on the question part; by dense
        score when there is none (the whole query's naming words would swamp BM25); BM25 when unreadable."""
        if mode == "sparse":
            return "sparse"
        if mode == "dense":
            return "dense"
        readable = self._readable(decision.question)
        if decision.question != query:
            return "hybrid" if readable else "sparse"
        return "dense" if readable and self._readable(query) else "sparse"

    def _question_vectors(
        self, queries: list[str], vectors: np.ndarray | None, decisions: list[FocusDecision], mode: str
    ) -> np.ndarray | None:
        """Query vectors with the focused queries' question parts encoded in their place (one batch)."""
        if vectors is None or mode == "sparse":
            return vectors
        changed = [i for i, (q, d) in enumerate(zip(queries, decisions)) if d.focused and d.question != q]
        if not changed:
            return vectors
        out = np.array(vectors, copy=True)
        out[changed] = self.index.encoder.encode_queries([decisions[i].question for i in changed])
        return out

    def _ranked_documents(self, query: str, dense: Ranking, sparse: Ranking, chunks: Mapping[int, Any], mode: str) -> list[tuple[str, float]]:
        """One query's documents, best first, from its candidate chunks, as :meth:`retrieve_documents` ranks them."""
        rule = self.aggregation
        if mode != "hybrid":
            return document_ranking(dense or sparse, chunks, rule)
        sides = [document_ranking(ranking, chunks, rule) for ranking in (dense, sparse)]
        return self._fuse(*sides, self._readable(query))


def _title(chunks: Mapping[int, Any], doc_id: str, *rankings: Ranking) -> str | None:
    """The title of ``doc_id`` from the metadata of one of its candidate chunks."""
    for ranking in rankings:
        for chunk_id, _ in ranking:
            chunk = chunks.get(chunk_id)
            if chunk is not None and chunk.doc_id == doc_id:
                title = chunk.metadata.get("title")
                return str(title) if title else None
    return None
