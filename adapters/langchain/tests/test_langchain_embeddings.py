"""DeepSeekRAGEmbeddings: the langchain-tests standard suites and agreement with the encoder."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_deepseek_rag import DeepSeekRAGEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from deepseek_rag import DualEncoder, EncoderConfig


class _TinyModelParams:
    _model: str = ""

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_model_dir):
        type(self)._model = str(tiny_model_dir)

    @property
    def embeddings_class(self) -> type[DeepSeekRAGEmbeddings]:
        return DeepSeekRAGEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": self._model}


class TestDeepSeekRAGEmbeddingsUnit(_TinyModelParams, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"DEEPSEEK_RAG_MODEL": self._model}, {}, {"model": self._model}


class TestDeepSeekRAGEmbeddingsIntegration(_TinyModelParams, EmbeddingsIntegrationTests):
    pass


def test_sides_match_the_encoder(tiny_model_dir):
    encoder = DualEncoder(EncoderConfig(model=str(tiny_model_dir), query_prefix="query: ", document_prefix="passage: "))
    embeddings = DeepSeekRAGEmbeddings(encoder=encoder)
    assert np.allclose(embeddings.embed_query("salt"), encoder.encode_queries(["salt"])[0], atol=1e-6)
    assert np.allclose(embeddings.embed_documents(["salt", "law"]), encoder.encode_documents(["salt", "law"]), atol=1e-6)
    assert not np.allclose(embeddings.embed_query("salt"), embeddings.embed_documents(["salt"])[0], atol=1e-4)
    assert embeddings.dim == encoder.dim


def test_encoder_must_be_a_dual_encoder():
    with pytest.raises(TypeError, match="DualEncoder"):
        DeepSeekRAGEmbeddings(encoder="not an encoder")
