"""Rank fusion: textbook RRF values, weights, normalised score fusion, ties, bad arguments."""

from __future__ import annotations

import pytest

from deepseek_rag import InvalidInputError
from deepseek_rag.retrieval.fusion import fuse, normalize_scores, reciprocal_rank_fusion, weighted_score_fusion

DENSE = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
SPARSE = [("c", 12.0), ("a", 3.0)]


def test_rrf_scores_are_the_textbook_sum():
    fused = dict(reciprocal_rank_fusion([DENSE, SPARSE]))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [k for k, _ in reciprocal_rank_fusion([DENSE, SPARSE])] == ["a", "c", "b"]


def test_rrf_weights_and_k():
    dense_only = reciprocal_rank_fusion([DENSE, SPARSE], weights=[1, 0])
    assert [k for k, _ in dense_only] == ["a", "b", "c"]
    assert dict(reciprocal_rank_fusion([DENSE], k=0))["a"] == 1.0


def test_minmax_fusion_puts_both_sides_on_one_scale():
    fused = dict(weighted_score_fusion([DENSE, SPARSE], [0.5, 0.5]))
    assert fused["c"] == pytest.approx(0.5 * 0 + 0.5 * 1)  # worst dense, best sparse
    assert fused["a"] == pytest.approx(0.5 * 1 + 0.5 * 0)
    assert fused["b"] == pytest.approx(0.5 * (0.7 / 0.8))  # missing from the sparse list counts 0 there
    assert normalize_scores([("x", 4.0)]) == ({"x": 1.0}, 0.0)  # a single hit is a full match


def test_zscore_fusion_gives_missing_keys_the_lowest_score():
    scores, missing = normalize_scores(SPARSE, "zscore")
    assert scores == {"c": pytest.approx(1.0), "a": pytest.approx(-1.0)} and missing == pytest.approx(-1.0)
    fused = weighted_score_fusion([DENSE, SPARSE], normalization="zscore")
    assert fused[0][0] in {"a", "c"} and len(fused) == 3


def test_ties_keep_first_appearance_and_empty_lists_are_fine():
    assert [k for k, _ in reciprocal_rank_fusion([[("x", 1.0)], [("y", 1.0)]])] == ["x", "y"]
    assert reciprocal_rank_fusion([[], []]) == []
    assert [k for k, _ in weighted_score_fusion([DENSE, []], [0.5, 0.5])] == ["a", "b", "c"]
    tied_sparse = [("c", 2.0), ("a", 2.0)]  # a zero-weight list decides no ties
    assert [k for k, _ in weighted_score_fusion([DENSE, tied_sparse], [0.0, 1.0])] == ["c", "a", "b"]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(InvalidInputError, match="one weight per list"):
        reciprocal_rank_fusion([DENSE, SPARSE], weights=[1.0])
    with pytest.raises(InvalidInputError, match=">= 0"):
        weighted_score_fusion([DENSE, SPARSE], [-1, 1])
    with pytest.raises(InvalidInputError, match="fusion='max'"):
        fuse([DENSE], "max")
    with pytest.raises(InvalidInputError, match="normalization='l2'"):
        normalize_scores(DENSE, "l2")
