"""Shared fixtures: a tiny random-init encoder built once per test session."""

from __future__ import annotations

import pytest

from deepseek_rag.testing import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A sentence-transformers style folder with a 2-layer, 32-dim BERT and a trained WordPiece tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
