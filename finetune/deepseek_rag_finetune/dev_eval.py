"""Evaluation during training: rank the dev positives among other positives, score nDCG@10 and Recall@10.

The dev corpus is every distinct dev positive plus up to ``pool`` positives of the training pairs (picked
by a seeded shuffle, so every evaluation of a run sees the same corpus); each dev query is judged against
its own positives. Exact search (a matrix product) — the corpus is small. Metrics come from
:func:`deepseek_rag.evaluation.score_run`, the same code ``deepseek-rag eval`` uses.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from deepseek_rag.evaluation import score_run

from .pairs import TrainingPair

logger = logging.getLogger(__name__)

Encode = Callable[[list[str], str], torch.Tensor]


@dataclass
class DevSet:
    """Queries, a corpus, and which corpus entries answer which query (ids are list positions as strings)."""

    queries: list[str]
    corpus: list[str]
    qrels: dict[str, dict[str, int]]

    def __len__(self) -> int:
        return len(self.queries)


def build_dev_set(dev: Sequence[TrainingPair], train: Sequence[TrainingPair], *, pool: int = 1000, seed: int = 0) -> DevSet:
    """Group dev pairs by query; corpus = dev positives + up to ``pool`` distinct training positives."""
    corpus_ids: dict[str, int] = {}
    corpus: list[str] = []

    def doc_id(text: str) -> int:
        if text not in corpus_ids:
            corpus_ids[text] = len(corpus)
            corpus.append(text)
        return corpus_ids[text]

    query_ids: dict[str, int] = {}
    queries: list[str] = []
    qrels: dict[str, dict[str, int]] = {}
    for pair in dev:
        if pair.query not in query_ids:
            query_ids[pair.query] = len(queries)
            queries.append(pair.query)
        qrels.setdefault(str(query_ids[pair.query]), {})[str(doc_id(pair.positive))] = 1
    distractors = sorted({p.positive for p in train} - set(corpus_ids))
    random.Random(seed).shuffle(distractors)
    for text in distractors[:pool]:
        doc_id(text)
    return DevSet(queries, corpus, qrels)


def evaluate_dev(encode: Encode, dev: DevSet, *, k: int = 10) -> dict[str, float]:
    """``{"ndcg@10", "recall@10", "mrr@10"}`` of ranking ``dev.corpus`` for ``dev.queries`` with ``encode``."""
    if not dev.queries:
        return {}
    q = encode(dev.queries, "query")
    d = encode(dev.corpus, "document")
    scores = q @ d.T
    top = torch.topk(scores, min(max(k, 100), len(dev.corpus)), dim=1)
    run = {
        str(i): {str(int(j)): float(s) for s, j in zip(top.values[i], top.indices[i])}
        for i in range(len(dev.queries))
    }
    metrics = score_run(run, dev.qrels, ndcg_k=(k,), recall_k=(k,), mrr_k=k)
    return {name: round(value, 5) for name, value in metrics.items()}
