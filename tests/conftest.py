"""Shared fixtures: a tiny random-init encoder built once per test session."""

from __future__ import annotations

import os

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


@pytest.fixture
def save_crashing_at_rename(monkeypatch):
    """``save_crashing_at_rename(index, "vectors.faiss.new")``: save, with ``os.replace`` of that file failing
    as a crash would, after the SQLite commit; ``os.replace`` works again afterwards."""
    real_replace = os.replace

    def run(index, staged_suffix: str) -> None:
        def crash(src, dst):
            if str(src).endswith(staged_suffix):
                raise OSError("simulated crash")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError):
            index.save()
        monkeypatch.setattr(os, "replace", real_replace)

    return run


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real ``milvus-lite server`` process on 127.0.0.1 for the session; yields its URI (http://127.0.0.1:PORT)."""
    from deepseek_rag.testing import start_milvus_lite_server

    server, uri = start_milvus_lite_server(tmp_path_factory.mktemp("milvus-server"))
    yield uri
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def milvus_lite_uri(tmp_path):
    """An embedded milvus-lite file in this test's folder (released when the test ends)."""
    from deepseek_rag.testing import release_milvus_lite

    path = tmp_path / "milvus.db"
    yield f"milvus://{path}"
    release_milvus_lite(path)
