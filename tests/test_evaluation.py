"""Metrics agree with hand-computed values (pytrec_eval conventions) and BEIR folders load."""

from __future__ import annotations

import math

import pytest

from deepseek_rag.errors import InvalidInputError
from deepseek_rag.evaluation import load_beir_split, mrr_at_k, ndcg_at_k, recall_at_k, score_run


def test_ndcg_uses_graded_gains_and_log2_discount():
    judged = {"a": 2, "b": 1}
    assert ndcg_at_k(["a", "b"], judged, 10) == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["b", "a"], judged, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["x", "y"], judged, 10) == 0.0
    assert ndcg_at_k(["x", "a"], judged, 1) == 0.0


def test_recall_and_mrr():
    judged = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["c", "a", "z"], judged, 2) == pytest.approx(0.5)
    assert mrr_at_k(["c", "z", "b"], judged, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["c", "z", "b"], judged, 2) == 0.0


def test_score_run_averages_over_judged_queries_missing_ones_count_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    metrics = score_run({"q1": {"a": 0.9, "x": 0.1}}, qrels)
    assert metrics["ndcg@10"] == pytest.approx(0.5)
    assert metrics["recall@100"] == pytest.approx(0.5)


def test_load_beir_split(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "q one"}\n{"_id": "2", "text": "q two"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t2\n")
    split = load_beir_split(tmp_path)
    assert split.queries == {"1": "q one"} and split.qrels == {"1": {"d1": 1, "d2": 2}}
    with pytest.raises(InvalidInputError, match="splits available: test"):
        load_beir_split(tmp_path, "dev")
