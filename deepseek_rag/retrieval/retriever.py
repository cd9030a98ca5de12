"""Retriever: a query in, ranked chunk hits (or documents) out, with their place in the source.

query → encode (query side) → FAISS search and/or BM25 search (+ metadata filter, on both) → fusion
(``fusion.py``) → chunk hits → optional aggregation to documents → optional neighbour expansion.

Three modes: ``dense`` (scores are inner products of unit vectors), ``sparse`` (BM25 scores; the only one on a
lexical-only index, built with ``dense="off"``) and
``hybrid`` (both sides, ``candidate_factor × top_k`` chunks each, fused; scores are fusion scores — the
weighted sum of min-max normalised scores, in [0, 1], or RRF's ``Σ 1/(60 + rank)``). Higher is better in
all. ``hybrid`` is the default on an index with a BM25 side: it measured best (see ``DEFAULT_MODE``).
A query the encoder cannot read (mostly unknown tokens, see ``UNREADABLE_SHARE``) is answered by the BM25
side alone in hybrid mode, and a query with no BM25 terms (punctuation only) by the dense side alone.
At document level, hybrid fuses the two sides' *document* rankings (each side's chunk scores aggregated
per document first), so a document found by one side through one chunk and by the other through another
still gets credit from both.

Beside it: ``arguments.py`` checks what a caller passes, ``hits.py`` turns rankings into hits and document scores,
``focused_search.py`` is the two-stage path of ``focus_documents``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..documents import DocumentHit, Hit
from ..errors import InvalidInputError
from ..storage.snapshot import LEXICAL_ONLY
from ..vectors.filters import Filter
from .arguments import MAX_TOP_K, check_choice, check_focus_documents, check_queries, check_top_k
from .focus import DEFAULT_MIN_GAP, FOCUS_AUTO, FocusDecision
from .focused_search import FocusedSearch
from .fusion import DEFAULT_RRF_K, FUSIONS, fuse
from .hits import AGGREGATIONS, Ranking, aggregate_document_scores, document_ranking, hit_from_chunk, ranking_of
from .protocol import IndexView, SearchableIndex
from .windows import check_window_tokens, windowed

logger = logging.getLogger(__name__)

LEVELS = ("chunk", "document")
MODES = ("dense", "sparse", "hybrid")
# Defaults from benchmarks/hybrid.py on SciFact (bundled MiniLM, document nDCG@10): dense 0.649, BM25 0.686,
# hybrid RRF 0.707, hybrid weighted (min-max, sparse weight 0.5) 0.726; weights 0.4–0.6 within 0.003.
DEFAULT_MODE = "hybrid"
"""The mode a retriever uses when none is given and the index has a sparse side (else ``dense``)."""
DEFAULT_FUSION = "weighted"
DEFAULT_SPARSE_WEIGHT = 0.5
UNREADABLE_SHARE = 0.5
"""In hybrid mode a query with at least this share of unknown tokens for the encoder is answered by BM25 alone
(when BM25 finds anything). On a Chinese medical QA set with the bundled English MiniLM (72% of tokens
unknown) fusing the dense side in cost 0.10 nDCG@10 (0.183 vs BM25's 0.285)."""


class Retriever(FocusedSearch):
    """Search a :class:`DocumentIndex` by text.

    ``expand_neighbors=n`` widens every hit to the span of its ``n`` neighbouring chunks on each side;
    ``window_tokens=n`` grows every chunk hit to a window of about ``n`` tokens around the matched chunk and
    drops hits already inside a better one's window (``windows.py``: small chunks matched, bounded windows
    returned);
    ``candidate_factor`` is how many more chunks than requested are fetched before grouping by document
    (and, in hybrid mode, from each side before fusing).

    ``mode``: ``"dense"``, ``"sparse"`` or ``"hybrid"`` (None: hybrid when the index has a sparse side).
    ``fusion``: ``"weighted"`` (min-max normalised scores, the default) or ``"rrf"``; ``sparse_weight`` in
    [0, 1] is the sparse side's share (the dense side gets the rest; 0.5 with RRF is textbook RRF).
    Every ``retrieve*`` method also takes ``mode``.

    ``focus_documents`` (chunk level) is two-stage ranking for questions about one long document among many
    ("the termination clause of the Acme lease"): documents are ranked first, with the whole query, then the
    chunks of the best ones only, with the part of the query that asks the question (see ``focus.py``).
    ``"auto"`` (the default) decides per query: it focuses on the best document when the query names it (its
    title occurs in the query) and the document holds at least ``top_k`` matching chunks, and keeps the plain
    ranking otherwise — so a corpus of short documents (abstracts, FAQ answers) is ranked exactly as with
    ``0`` (off), and at its cost: when no document of the index holds ``top_k`` chunks (a bound each snapshot
    keeps), the rule is not run at all. ``n >= 1`` always returns chunks of the best ``n`` documents only. Inside the focused
    documents, chunks are ranked in the retriever's mode by the question part when the query names the
    document, else by their dense score (BM25 in sparse mode, or when the encoder cannot read the query:
    ``UNREADABLE_SHARE``). On CUAD (first 40 training-split contracts, 438 questions, bundled MiniLM, hybrid)
    the rule took span Recall@8 from 0.527 (off) to 0.845 and chunk-hit precision@8 from 0.089 to 0.182.
    ``focus_min_gap`` also focuses when the best document's fused score leads the second's by that much
    (hybrid weighted fusion only).
    """

    def __init__(
        self,
        index: SearchableIndex,
        *,
        top_k: int = 10,
        level: str = "chunk",
        aggregation: str = "max",
        expand_neighbors: int = 0,
        candidate_factor: int = 5,
        nprobe: int | None = None,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
        fusion: str = DEFAULT_FUSION,
        sparse_weight: float = DEFAULT_SPARSE_WEIGHT,
        rrf_k: int = DEFAULT_RRF_K,
        focus_documents: int | str = FOCUS_AUTO,
        focus_min_gap: float | None = DEFAULT_MIN_GAP,
        window_tokens: int | None = None,
    ) -> None:
        self.index = index
        self.window_tokens = check_window_tokens(window_tokens)
        if self.window_tokens and expand_neighbors:
            raise InvalidInputError("give expand_neighbors or window_tokens, not both (both widen each hit)")
        self.focus_documents = check_focus_documents(focus_documents)
        if focus_min_gap is not None and (isinstance(focus_min_gap, bool) or not isinstance(focus_min_gap, (int, float))
                                          or not 0 <= focus_min_gap <= 1):
            raise InvalidInputError(f"focus_min_gap={focus_min_gap!r} must be a number from 0 to 1, or None (off)")
        self.focus_min_gap = None if focus_min_gap is None else float(focus_min_gap)
        self.top_k = check_top_k(top_k)
        self.level = check_choice("level", level, LEVELS)
        self.aggregation = check_choice("aggregation", aggregation, AGGREGATIONS)
        if expand_neighbors < 0:
            raise InvalidInputError(f"expand_neighbors={expand_neighbors} must be 0 or more")
        if candidate_factor < 1:
            raise InvalidInputError(f"candidate_factor={candidate_factor} must be at least 1")
        self.expand_neighbors = expand_neighbors
        self.candidate_factor = candidate_factor
        self.nprobe = nprobe
        Filter.parse(filters)  # a bad filter is an error now, not at the first query
        self.filters = dict(filters or {}) if not isinstance(filters, Filter) else filters.to_dict()
        self.fusion = check_choice("fusion", fusion, FUSIONS)
        if isinstance(sparse_weight, bool) or not isinstance(sparse_weight, (int, float)) or not 0 <= sparse_weight <= 1:
            raise InvalidInputError(f"sparse_weight={sparse_weight!r} must be a number from 0 (dense only) to 1 (sparse only)")
        self.sparse_weight = float(sparse_weight)
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
            raise InvalidInputError(f"rrf_k={rrf_k!r} must be a whole number >= 0 (60 is the usual choice)")
        self.rrf_k = rrf_k
        self.mode = self._check_mode(mode)

    # ------------------------------------------------------------------------------------ public
    def retrieve(
        self, query: str, top_k: int | None = None, *, filters: Mapping[str, Any] | None = None, mode: str | None = None
    ) -> list[Hit]:
        """The ``top_k`` best chunks for ``query``, best first."""
        return self.retrieve_batch([query], top_k, filters=filters, mode=mode)[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[list[Hit]]:
        """:meth:`retrieve` for many queries, encoded in one batch."""
        k = check_top_k(top_k if top_k is not None else self.top_k)
        queries = check_queries(queries)
        mode = self._check_mode(mode) if mode is not None else self.mode
        vectors = self._encode(queries, mode)
        with self.index.reading() as view:
            if self._may_focus(view, k):
                return self._focused_chunk_hits(view, queries, vectors, k, filters, mode)[0]
            return self._chunk_hits(view, queries, vectors, k, filters, mode, expand=True)

    def focus_decisions(
        self,
        queries: Sequence[str],
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> list[FocusDecision]:
        """What :meth:`retrieve_batch` decides for each query under ``focus_documents`` (which documents it ranks
        inside, and with which text); empty ``doc_ids`` when it keeps the plain ranking."""
        k = check_top_k(top_k if top_k is not None else self.top_k)
        queries = check_queries(queries)
        mode = self._check_mode(mode) if mode is not None else self.mode
        if not self.focus_documents:
            return [FocusDecision((), q) for q in queries]
        vectors = self._encode(queries, mode)
        with self.index.reading() as view:
            return self._focused_chunk_hits(view, queries, vectors, k, filters, mode, skip_short=False)[1]

    def retrieve_documents(
        self,
        query: str,
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
        mode: str | None = None,
    ) -> list[DocumentHit]:
        """The ``top_k`` best documents for ``query``, each scored from its chunks."""
        return self.retrieve_documents_batch([query], top_k, filters=filters, aggregation=aggregation, mode=mode)[0]

    def retrieve_documents_batch(
        self,
        queries: Sequence[str],
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
        mode: str | None = None,
    ) -> list[list[DocumentHit]]:
        queries = check_queries(queries)
        mode = self._check_mode(mode) if mode is not None else self.mode
        vectors = self._encode(queries, mode)
        with self.index.reading() as view:
            return self._document_hits(view, queries, vectors, top_k, filters, aggregation, mode)

    def documents_by_vectors(
        self,
        vectors: np.ndarray,
        top_k: int | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        aggregation: str | None = None,
        queries: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> list[list[DocumentHit]]:
        """Document hits for already-encoded query vectors (n, dim).

        Without ``queries`` only the vectors are searched (dense); with the query texts as well, the
        retriever's mode (or ``mode``) applies and the sparse side is searched too.
        """
        mode, queries = self._vector_mode(vectors, queries, mode)
        with self.index.reading() as view:
            return self._document_hits(view, queries, vectors, top_k, filters, aggregation, mode)

    def search_by_vectors(
        self,
        vectors: np.ndarray,
        top_k: int,
        *,
        filters: Mapping[str, Any] | None = None,
        expand: bool = True,
        queries: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> list[list[Hit]]:
        """Chunk hits for already-encoded query vectors (n, dim); ``queries`` as in :meth:`documents_by_vectors`.

        With ``focus_documents`` set and the query texts given, chunks come from the best documents only, as in
        :meth:`retrieve`."""
        mode, queries = self._vector_mode(vectors, queries, mode)
        k = check_top_k(top_k)
        with self.index.reading() as view:
            if queries is not None and self._may_focus(view, k):
                return self._focused_chunk_hits(view, queries, vectors, k, filters, mode)[0]
            return self._chunk_hits(view, queries, vectors, k, filters, mode, expand=expand)

    # ------------------------------------------------------------------------------------ searching
    def _check_mode(self, mode: str | None) -> str:
        dense = getattr(self.index, "has_dense", True)
        if mode is None:
            return "dense" if not self.index.has_sparse else (DEFAULT_MODE if dense else "sparse")
        mode = check_choice("mode", mode, MODES)
        if mode != "sparse" and not dense:
            raise InvalidInputError(f"mode={mode!r} needs vectors: {LEXICAL_ONLY}")
        if mode != "dense" and not self.index.has_sparse:
            raise InvalidInputError(
                f"mode={mode!r} needs the index's sparse (BM25) side, and this index was built without one "
                "(sparse.enabled=False); use mode='dense' or rebuild the index"
            )
        return mode

    def _vector_mode(
        self, vectors: np.ndarray, queries: Sequence[str] | None, mode: str | None
    ) -> tuple[str, list[str] | None]:
        if queries is None:
            return "dense", None
        queries = check_queries(queries)
        if len(queries) != len(np.atleast_2d(vectors)):
            raise InvalidInputError(f"{len(queries)} queries for {len(np.atleast_2d(vectors))} query vectors; give one each")
        return (self._check_mode(mode) if mode is not None else self.mode), queries

    def _encode(self, queries: list[str], mode: str) -> np.ndarray | None:
        return None if mode == "sparse" else self.index.encoder.encode_queries(queries)

    def _side_rankings(
        self, view: IndexView, queries: list[str] | None, vectors: np.ndarray | None, depth: int, filters: Mapping[str, Any] | None, mode: str
    ) -> tuple[list[Ranking] | None, list[Ranking] | None]:
        """Each side's (chunk id, score) lists, best first, for the sides ``mode`` uses."""
        merged = Filter.all_of(self.filters, filters)
        dense = sparse = None
        if mode in ("dense", "hybrid"):
            scores, ids = view.search_vectors(vectors, depth, filters=merged, nprobe=self.nprobe)
            dense = [ranking_of(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids)]
        if mode in ("sparse", "hybrid"):
            scores, ids = view.search_sparse(queries, depth, filters=merged)
            sparse = [ranking_of(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids)]
        return dense, sparse

    def _readable(self, query: str) -> bool:
        """False when half or more of ``query``'s tokens are the encoder's unknown token (Chinese for the
        bundled English MiniLM): its vector then says little, and fusing it in only adds noise."""
        encoder = self.index.encoder
        unknown = encoder.unk_token_id
        if unknown is None:
            return True
        # the shared Rust tokenizer: the transformers wrapper costs ~0.2 ms a query here, all of it under the GIL,
        # and a per-thread copy is made again for every new worker thread
        ids = encoder.token_ids(query)
        return not ids or ids.count(unknown) < UNREADABLE_SHARE * len(ids)

    def _fuse(self, dense: list, sparse: list, readable: bool = True) -> list:
        w = self.sparse_weight
        if not readable and sparse:
            dense, w = [], 1.0  # the encoder cannot read the query: BM25's ranking alone
        weights = (2 * (1 - w), 2 * w) if self.fusion == "rrf" else (1 - w, w)
        return fuse([dense, sparse], self.fusion, weights, rrf_k=self.rrf_k)

    def _chunk_hits(
        self,
        view: IndexView,
        queries: list[str] | None,
        vectors: np.ndarray | None,
        k: int,
        filters: Mapping[str, Any] | None,
        mode: str,
        *,
        expand: bool,
    ) -> list[list[Hit]]:
        want = self._candidates_wanted(k) if expand else k
        depth = min(MAX_TOP_K, want * self.candidate_factor) if mode == "hybrid" else want
        dense, sparse = self._side_rankings(view, queries, vectors, depth, filters, mode)
        if mode == "hybrid":
            rankings = [self._fuse(d, s, self._readable(q))[:want] for q, d, s in zip(queries, dense, sparse)]
        else:
            rankings = dense if mode == "dense" else sparse
        chunks = view.get_chunks(sorted({i for ranking in rankings for i, _ in ranking}))
        results = []
        for ranking in rankings:
            hits = [hit_from_chunk(chunks[i], s) for i, s in ranking if i in chunks]
            results.append(self._widen(view, hits, k) if expand else hits)
        return results

    def _candidates_wanted(self, k: int) -> int:
        """Chunks to rank for ``k`` results: twice as many with windows, which may drop hits they cover."""
        return min(MAX_TOP_K, 2 * k) if self.window_tokens else k

    def _widen(self, view: IndexView, hits: list[Hit], k: int) -> list[Hit]:
        """The first ``k`` hits as returned: grown to windows (``window_tokens``) or neighbour spans."""
        if self.window_tokens:
            return windowed(view, hits, k, self.window_tokens, self.index.encoder.token_offsets)
        hits = hits[:k]
        return [self._expand(view, h) for h in hits] if self.expand_neighbors else hits

    def _document_hits(
        self,
        view: IndexView,
        queries: list[str] | None,
        vectors: np.ndarray | None,
        top_k: int | None,
        filters: Mapping[str, Any] | None,
        aggregation: str | None,
        mode: str,
    ) -> list[list[DocumentHit]]:
        k = check_top_k(top_k if top_k is not None else self.top_k)
        rule = check_choice("aggregation", aggregation or self.aggregation, AGGREGATIONS)
        chunk_k = min(MAX_TOP_K, k * self.candidate_factor)
        if mode != "hybrid":
            per_query = self._chunk_hits(view, queries, vectors, chunk_k, filters, mode, expand=False)
            return [self._group(view, hits, k, rule) for hits in per_query]
        dense, sparse = self._side_rankings(view, queries, vectors, chunk_k, filters, mode)
        chunks = view.get_chunks(sorted({i for side in (dense, sparse) for r in side for i, _ in r}))
        results = []
        for query, dense_ranking, sparse_ranking in zip(queries, dense, sparse):
            readable = self._readable(query)
            sides = [document_ranking(ranking, chunks, rule) for ranking in (dense_ranking, sparse_ranking)]
            chunk_scores = dict(self._fuse(dense_ranking, sparse_ranking, readable))
            by_doc: dict[str, list[Hit]] = defaultdict(list)
            for chunk_id, score in sorted(chunk_scores.items(), key=lambda item: -item[1]):
                if chunk_id in chunks:
                    by_doc[chunks[chunk_id].doc_id].append(hit_from_chunk(chunks[chunk_id], score))
            docs = [
                DocumentHit(doc_id, score, by_doc[doc_id], by_doc[doc_id][0].metadata)
                for doc_id, score in self._fuse(*sides, readable)[:k]
            ]
            if self.expand_neighbors:
                for doc in docs:
                    doc.hits = [self._expand(view, h) for h in doc.hits]
            results.append(docs)
        return results

    # ------------------------------------------------------------------------------------ helpers
    def _group(self, view: IndexView, hits: list[Hit], k: int, rule: str) -> list[DocumentHit]:
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
                doc.hits = [self._expand(view, h) for h in doc.hits]
        return docs

    def _expand(self, view: IndexView, hit: Hit) -> Hit:
        n = self.expand_neighbors
        window = view.chunks_of(hit.doc_id, hit.ordinal - n, hit.ordinal + n)
        if len(window) <= 1:
            return hit
        start, end = min(c.start for c in window), max(c.end for c in window)
        text = view.document_span(hit.doc_id, start, end)
        return Hit(hit.chunk_id, hit.doc_id, hit.score, start, end, text, hit.ordinal, hit.section, hit.metadata)
