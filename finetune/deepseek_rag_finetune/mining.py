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

    if method == "dense":
        if encode is None:
            raise InvalidInputError("dense mining needs an encoder; pass encode= or use method='bm25'")
        ranked, positive_score = _dense_rank(queries, pool, pairs, encode, depth)
    elif method == "bm25":
        ranked, positive_score = _bm25_rank(queries, pool, pairs, depth)
    else:
        raise InvalidInputError(f"mining method {method!r} is not one of dense, bm25")

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


def _dense_rank(queries, pool, pairs, encode, depth):
    from deepseek_rag.vectors.faiss_store import VectorIndex

    q = np.ascontiguousarray(encode(queries, "query"), dtype=np.float32)
    d = np.ascontiguousarray(encode(pool, "document"), dtype=np.float32)
    index = VectorIndex(d.shape[1], "Flat")
    index.add(np.arange(len(pool), dtype=np.int64), d)
    scores, ids = index.search(q, depth)
    ranked = {query: [(int(i), float(s)) for s, i in zip(scores[row], ids[row]) if i >= 0] for row, query in enumerate(queries)}
    row_of = {query: row for row, query in enumerate(queries)}
    slot = {text: i for i, text in enumerate(pool)}
    missing = list(dict.fromkeys(p.positive for p in pairs if p.positive not in slot))
    extra = np.ascontiguousarray(encode(missing, "document"), dtype=np.float32) if missing else np.zeros((0, d.shape[1]), np.float32)
    extra_row = {text: i for i, text in enumerate(missing)}
    positive_score = {}
    for pair in pairs:
        vector = d[slot[pair.positive]] if pair.positive in slot else extra[extra_row[pair.positive]]
        positive_score[(pair.query, pair.positive)] = float(q[row_of[pair.query]] @ vector)
    return ranked, positive_score


def _bm25_rank(queries, pool, pairs, depth):
    try:
        import bm25s
    except ImportError as exc:
        raise InvalidInputError("BM25 mining needs bm25s: pip install 'deepseek-rag-finetune[bm25]'") from exc
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(pool), stopwords="en", show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
    ranked, positive_score = {}, {}
    slot = {text: i for i, text in enumerate(pool)}
    full_scores = {}
    for query, tokens in zip(queries, query_tokens):
        scores = np.asarray(retriever.get_scores(tokens))
        top = np.argsort(-scores, kind="stable")[:depth]
        ranked[query] = [(int(i), float(scores[i])) for i in top]
        full_scores[query] = scores
    for pair in pairs:
        if pair.positive in slot:
            positive_score[(pair.query, pair.positive)] = float(full_scores[pair.query][slot[pair.positive]])
        else:  # a positive outside the pool: score it alone (term statistics stay the pool's)
            positive_score[(pair.query, pair.positive)] = float("inf")
    return ranked, positive_score
