from __future__ import annotations

import numpy as np
import pytest

from deepseek_rag.errors import InvalidInputError
from deepseek_rag_finetune.mining import mine_hard_negatives
from deepseek_rag_finetune.pairs import TrainingPair

# 1-D "embeddings" on a circle: cosine falls with the angle distance, so ranks are known in advance.
ANGLES = {"q": 0.0, "pos": 0.0, "dup": 0.02, "n1": 0.4, "n2": 0.6, "n3": 0.8, "n4": 1.0, "far": 3.0}


def fake_encode(texts, side):
    return np.array([[np.cos(ANGLES[t]), np.sin(ANGLES[t])] for t in texts], dtype=np.float32)


CORPUS = ["pos", "dup", "n1", "n2", "n3", "n4", "far"]


def test_skips_positive_and_near_duplicates_and_takes_n_in_order():
    [pair] = mine_hard_negatives([TrainingPair("q", "pos")], fake_encode, corpus=CORPUS, n=2, ranks=(1, 30), margin=0.05)
    assert pair.negatives == ["n1", "n2"]


def test_rank_window_excludes_the_top():
    [pair] = mine_hard_negatives([TrainingPair("q", "pos")], fake_encode, corpus=CORPUS, n=2, ranks=(4, 6), margin=0.05)
    assert pair.negatives == ["n2", "n3"]  # ranks: pos 1, dup 2, n1 3, n2 4, n3 5


def test_relative_margin_and_given_negatives_kept_first():
    [pair] = mine_hard_negatives([TrainingPair("q", "pos", ["far"])], fake_encode, corpus=CORPUS, n=2, ranks=(1, 30),
                                 margin=0.2, relative=True)
    # n1 (cos 0.92) and n2 (cos 0.83) score above 1 * (1 - 0.2): near duplicates; n3 (cos 0.70) is the first kept
    assert pair.negatives == ["far", "n3"]


def test_other_positives_of_the_same_query_are_never_negatives():
    pairs = [TrainingPair("q", "pos"), TrainingPair("q", "n1")]
    mined = mine_hard_negatives(pairs, fake_encode, corpus=CORPUS, n=1, ranks=(1, 30), margin=0.0)
    assert all("n1" not in p.negatives and "pos" not in p.negatives for p in mined)


def test_bm25_mining():
    pairs = [TrainingPair("insulin resistance diabetes", "insulin resistance precedes type 2 diabetes in adults")]
    corpus = [pairs[0].positive, "diabetes diet and insulin dosing", "the weather is sunny", "resistance training for adults"]
    [pair] = mine_hard_negatives(pairs, corpus=corpus, method="bm25", n=1, ranks=(1, 4), margin=0.0, relative=True)
    assert pair.negatives == ["diabetes diet and insulin dosing"]


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="encoder"):
        mine_hard_negatives([TrainingPair("q", "pos")], None, corpus=CORPUS)
    with pytest.raises(InvalidInputError, match="ranks"):
        mine_hard_negatives([TrainingPair("q", "pos")], fake_encode, corpus=CORPUS, ranks=(3, 1))
