"""DeepSeekRAGEmbedding: the dual encoder inside a user's own LlamaIndex vector store."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import TextNode
from llama_index.retrievers.deepseek_rag import DeepSeekRAGEmbedding

from deepseek_rag import DualEncoder, EncoderConfig


def test_class():
    assert BaseEmbedding.__name__ in [b.__name__ for b in DeepSeekRAGEmbedding.__mro__]


@pytest.fixture(scope="module")
def embed_model(tiny_encoder):
    return DeepSeekRAGEmbedding(encoder=tiny_encoder)


def test_query_and_text_sides_match_the_encoder(embed_model, tiny_encoder):
    query = embed_model.get_query_embedding("who may terminate?")
    texts = embed_model.get_text_embedding_batch(["Either party may terminate.", "Payment is due."])
    assert np.allclose(query, tiny_encoder.encode_queries(["who may terminate?"])[0], atol=1e-6)
    assert np.allclose(texts, tiny_encoder.encode_documents(["Either party may terminate.", "Payment is due."]), atol=1e-6)
    assert len(query) == embed_model.dim == tiny_encoder.dim


def test_query_side_uses_the_query_prefix(tiny_model_dir):
    prefixed = DualEncoder(EncoderConfig(model=str(tiny_model_dir), query_prefix="query: ", document_prefix="passage: "))
    embed_model = DeepSeekRAGEmbedding(encoder=prefixed)
    query = embed_model.get_query_embedding("salt intake")
    text = embed_model.get_text_embedding("salt intake")
    assert np.allclose(query, prefixed.encode_queries(["salt intake"])[0], atol=1e-6)
    assert not np.allclose(query, text, atol=1e-4)


@pytest.mark.asyncio
async def test_async_variants(embed_model):
    query = await embed_model.aget_query_embedding("salt")
    texts = await embed_model.aget_text_embedding_batch(["salt", "pepper"])
    assert np.allclose(query, embed_model.get_query_embedding("salt"), atol=1e-6)
    assert np.allclose(texts, embed_model.get_text_embedding_batch(["salt", "pepper"]), atol=1e-6)


def test_model_from_environment(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("DEEPSEEK_RAG_MODEL", str(tiny_model_dir))
    embed_model = DeepSeekRAGEmbedding()
    assert embed_model.model_name == str(tiny_model_dir)


def test_in_a_llama_index_vector_store(embed_model):
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(
        ["Either party may terminate this agreement.", "Patients should reduce salt intake.", "The quick brown fox."]
    )]
    index = VectorStoreIndex(nodes=nodes, embed_model=embed_model)
    results = index.as_retriever(similarity_top_k=1).retrieve("Patients should reduce salt intake.")
    assert results[0].node.node_id == "n1"
