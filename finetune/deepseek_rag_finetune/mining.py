"""Hard-negative mining: for each pair, passages the current model ranks high that are not its answer.

Candidates come from a pool (a corpus, or the positives of all pairs), ranked for each query either by a
dense encoder over a FAISS ``Flat`` :class:`deepseek_rag.VectorIndex` or by BM25 (``bm25s``). From the rank
window ``ranks`` (1-based, inclusive — the very top is often an unlabelled positive) we skip every known
positive of the query and every near-duplicate of the positive: a candidate scoring above
``positive - margin`` (or ``positive * (1 - margin)`` with ``relative=True``, the form BM25 scores need).
This module does not train; the trainer calls it once before the first epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from deepseek_rag.errors import InvalidInputError

from .pairs import TrainingPair

logger = logging.getLogger(__name__)

Encode = Callable[[list[str], str], "np.ndarray"]


def encoder_encode(encoder: object) -> Encode:
    """Adapt a :class:`deepseek_rag.DualEncoder` to ``encode(texts, side) -> (n, d) float32``."""

    def encode(texts: list[str], side: str) -> np.ndarray:
        if side == "query":
            return encoder.encode_queries(texts)  # type: ignore[attr-defined]
        return encoder.encode_documents(texts)  # type: ignore[attr-defined]

    return encode


def mine_hard_negatives(
    pairs: Sequence[TrainingPair],
    encode: Encode | None = None,
    *,
    corpus: Sequence[str] | None = None,
    method: str = "dense",
    n: int = 1,
    ranks: tuple[int, int] = (3, 30),
    margin: float = 0.05,
    relative: bool = False,
) -> list[TrainingPair]:
    """Copies of ``pairs`` whose negatives are topped up to ``n`` with mined passages (given ones kept first)."""
    if n < 1:
        raise InvalidInputError(f"n={n} negatives per pair must be at least 1")
    first, last = ranks
    if not 1 <= first <= last:
        raise InvalidInputError(f"ranks={ranks} must be (first, last) with 1 <= first <= last")
    pool = list(dict.fromkeys(corpus if corpus is not None else [p.positive for p in pairs]))
    if len(pool) < 2:
        raise InvalidInputError("mining needs a pool of at least 2 passages (give a corpus or more pairs)")
    queries = list(dict.fromkeys(p.query for p in pairs))
    positives_of: dict[str, set[str]] = {}
    for pair in pairs:
        positives_of.setdefault(pair.query, set()).add(pair.positive)
    depth = min(last, len(pool))
    ranked, positive_score = _rank_with_positives(queries, pool, pairs, method, encode, depth)

    mined: list[TrainingPair] = []
    short = 0
    for pair in pairs:
        negatives = list(pair.negatives[:n])
        ceiling = positive_score[(pair.query, pair.positive)]
        ceiling = ceiling * (1 - margin) if relative else ceiling - margin
        for rank, (doc, score) in enumerate(ranked[pair.query], 1):
            if len(negatives) >= n:
                break
            if rank < first or rank > last:
                continue
            text = pool[doc]
            if text in positives_of[pair.query] or text in negatives or score > ceiling:
                continue
            negatives.append(text)
        short += len(negatives) < n
        mined.append(TrainingPair(pair.query, pair.positive, negatives))
    if short:
        logger.info("%d of %d pairs got fewer than %d mined negatives (window %s, margin %s)", short, len(pairs), n, ranks, margin)
    return mined


def rank_passages(queries: Sequence[str], pool: Sequence[str], *, method: str = "dense", encode: Encode | None = None,
                  depth: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """For each query, the ``depth`` best passages of ``pool`` (all by default) as (pool index, score), best first.

    ``method``: dense (``encode`` both sides, cosine over a FAISS ``Flat`` index) or bm25 (``bm25s``).
    """
    depth = len(pool) if depth is None else min(depth, len(pool))
    return _rank(list(queries), list(pool), method, encode, depth)[0]


def _rank(queries, pool, method, encode, depth):
    """(ranked, score_of): ranked as :func:`rank_passages`; ``score_of([(query, text)...])`` scores any passages."""
    if method == "dense":
        if encode is None:
            raise InvalidInputError("dense mining needs an encoder; pass encode= or use method='bm25'")
        return _dense_rank(queries, pool, encode, depth)
    if method == "bm25":
        return _bm25_rank(queries, pool, depth)
    raise InvalidInputError(f"mining method {method!r} is not one of dense, bm25")


def _rank_with_positives(queries, pool, pairs, method, encode, depth):
    ranked, score_of = _rank(queries, pool, method, encode, depth)
    positive_score = score_of([(p.query, p.positive) for p in pairs])
    return ranked, positive_score


def _dense_rank(queries, pool, encode, depth):
    from deepseek_rag.vectors.faiss_store import VectorIndex

    q = np.ascontiguousarray(encode(queries, "query"), dtype=np.float32)
    d = np.ascontiguousarray(encode(pool, "document"), dtype=np.float32)
    index = VectorIndex(d.shape[1], "Flat")
    index.add(np.arange(len(pool), dtype=np.int64), d)
    scores, ids = index.search(q, depth)
    ranked = {query: [(int(i), float(s)) for s, i in zip(scores[row], ids[row]) if i >= 0] for row, query in enumerate(queries)}
    row_of = {query: row for row, query in enumerate(queries)}
    slot = {text: i for i, text in enumerate(pool)}

    def score_of(wanted):
        missing = list(dict.fromkeys(text for _, text in wanted if text not in slot))
        extra = np.ascontiguousarray(encode(missing, "document"), dtype=np.float32) if missing else np.zeros((0, d.shape[1]), np.float32)
        extra_row = {text: i for i, text in enumerate(missing)}
        return {(query, text): float(q[row_of[query]] @ (d[slot[text]] if text in slot else extra[extra_row[text]]))
                for query, text in wanted}

    return ranked, score_of


def _bm25_rank(queries, pool, depth):
    try:
        import bm25s
    except ImportError as exc:
        raise InvalidInputError("BM25 mining needs bm25s: pip install 'deepseek-rag-finetune[bm25]'") from exc
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets DEBUG at import: a line per index built
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(pool), stopwords="en", show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
    ranked = {}
    slot = {text: i for i, text in enumerate(pool)}
    full_scores = {}
    for query, tokens in zip(queries, query_tokens):
        scores = np.asarray(retriever.get_scores(tokens))
        top = np.argsort(-scores, kind="stable")[:depth]
        ranked[query] = [(int(i), float(scores[i])) for i in top]
        full_scores[query] = scores

    def score_of(wanted):
        # a passage outside the pool: unscored (term statistics stay the pool's), so it never blocks a candidate
        return {(query, text): float(full_scores[query][slot[text]]) if text in slot else float("inf")
                for query, text in wanted}

    return ranked, score_of
