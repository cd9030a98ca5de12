"""Fixtures: a tiny random-init BERT whose vocabulary covers a toy retrieval task, and that task's pairs."""

from __future__ import annotations

import pytest

from deepseek_rag.testing import build_tiny_model
from finetune_toy import toy_pairs

@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    texts = [p.query + " " + p.positive for p in toy_pairs()] + ["negative distractor passage text here."]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), texts, hidden_size=32, max_seq_length=64)


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory):
    """Same architecture, other weights: an adapter trained on one must not load on the other."""
    texts = [p.query + " " + p.positive for p in toy_pairs()]
    return build_tiny_model(tmp_path_factory.mktemp("other-tiny-model"), texts, hidden_size=32, max_seq_length=64, seed=1)


@pytest.fixture
def pairs():
    return toy_pairs()
