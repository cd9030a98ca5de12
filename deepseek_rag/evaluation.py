"""BEIR-style evaluation: load queries and qrels, rank documents, compute the standard metrics.

nDCG@k uses graded gains the way pytrec_eval (and so BEIR and MTEB) computes it — gain = relevance,
discount = log2(rank + 1), ideal ranking over the judged documents; Recall@k counts judged-relevant
documents (relevance > 0); MRR@k is the reciprocal rank of the first relevant one. Documents are ranked
from chunk hits (chunk scores aggregated per document, see ``retriever.py``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

logger = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

HELD_OUT_SHARE = 0.25
"""Share of documents :func:`held_out` keeps away from fine-tuning (the CUAD evaluation split)."""


def held_out(doc_id: str, share: float = HELD_OUT_SHARE) -> bool:
    """The train/held-out split rule for span-labelled documents (CUAD): a document is held out when the
    first 8 bytes of sha256(its id), read as a fraction of 2^64, fall below ``share`` (124 of CUAD's 472
    contracts with questions). Deterministic and independent of file order, so a fine-tune
    (``deepseek-rag finetune --spans``) and its evaluation (``benchmarks/cuad_spans.py --split heldout``)
    agree on it without sharing state."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") / 2**64 < share


@dataclass
class BeirSplit:
    """Queries that have judgements in one split, and those judgements."""

    queries: dict[str, str]
    qrels: Qrels


def load_beir_split(folder: str | Path, split: str = "test") -> BeirSplit:
    """Read ``queries.jsonl`` and ``qrels/<split>.tsv`` from a BEIR folder; keep the judged queries."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise InvalidInputError(
            f"{qrels_path} not found: is {folder} a BEIR folder? splits available: {', '.join(available) or 'none'}"
        )
    qrels: Qrels = {}
    with open(qrels_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            if not row or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
    queries: dict[str, str] = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    missing = set(qrels) - set(queries)
    if missing:
        logger.warning("%d judged queries have no text in queries.jsonl; they are skipped", len(missing))
        qrels = {q: r for q, r in qrels.items() if q in queries}
    return BeirSplit(queries, qrels)


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc in enumerate(ranked[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


METRICS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; an unknown metric is an :class:`InvalidInputError` naming the known ones."""
    base, _, depth = name.partition("@")
    if base not in METRICS or not depth.isdigit() or int(depth) < 1:
        raise InvalidInputError(f"metric {name!r} is not one of ndcg@K, recall@K, mrr@K (K a positive whole number)")
    return base, int(depth)


def per_query(run: Run, qrels: Qrels, metric: str) -> dict[str, float]:
    """``metric`` (e.g. ``"ndcg@10"``) of every judged query (a query missing from ``run`` scores 0)."""
    base, k = parse_metric(metric)
    out = {}
    for qid, judged in qrels.items():
        scored = run.get(qid, {})
        ranked = sorted(scored, key=lambda d: scored[d], reverse=True)
        out[qid] = METRICS[base](ranked, judged, k)
    return out


def rank_documents(retriever: Any, split: BeirSplit, *, depth: int = 100) -> Run:
    """Every judged query's ranked documents (the query's own id left out, as BEIR does)."""
    qids = list(split.queries)
    run: Run = {}
    for start in range(0, len(qids), 256):
        batch = qids[start : start + 256]
        results = retriever.retrieve_documents_batch([split.queries[q] for q in batch], depth)
        for qid, docs in zip(batch, results):
            run[qid] = {d.doc_id: d.score for d in docs if d.doc_id != qid}
    return run


def score_run(run: Run, qrels: Qrels, *, ndcg_k: Sequence[int] = (10,), recall_k: Sequence[int] = (10, 100), mrr_k: int = 10) -> dict[str, float]:
    """Mean metrics over the judged queries (a query missing from ``run`` scores 0)."""
    totals: dict[str, float] = {}
    for qid, judged in qrels.items():
        scored = run.get(qid, {})
        ranked = sorted(scored, key=lambda d: scored[d], reverse=True)
        values = {f"ndcg@{k}": ndcg_at_k(ranked, judged, k) for k in ndcg_k}
        values.update({f"recall@{k}": recall_at_k(ranked, judged, k) for k in recall_k})
        values[f"mrr@{mrr_k}"] = mrr_at_k(ranked, judged, mrr_k)
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value
    return {name: total / max(1, len(qrels)) for name, total in totals.items()}


def evaluate_retriever(retriever: Any, split: BeirSplit, *, depth: int = 100, latency_queries: int = 200) -> dict[str, Any]:
    """Rank documents for every judged query, score them, and time single queries end to end.

    Returns the metrics plus ``query_ms_p50`` / ``query_ms_p99`` measured one query at a time (encode +
    search + fetch), as a user's request would run, over up to ``latency_queries`` queries.
    """
    qids = list(split.queries)
    run = rank_documents(retriever, split, depth=depth)
    metrics: dict[str, Any] = score_run(run, split.qrels)
    timings = []
    for qid in qids[:latency_queries]:
        started = time.perf_counter()
        retriever.retrieve_documents(split.queries[qid], 10)
        timings.append((time.perf_counter() - started) * 1000)
    metrics["queries"] = len(qids)
    if timings:
        metrics["query_ms_p50"] = float(np.percentile(timings, 50))
        metrics["query_ms_p99"] = float(np.percentile(timings, 99))
    return metrics
