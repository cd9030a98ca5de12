"""DeepSeekRAGEmbedding: deepseek-rag's dual encoder as a LlamaIndex ``BaseEmbedding``.

For users who keep their own LlamaIndex vector store: queries go through the encoder's query side
(prefix, query LoRA adapter), texts through its document side, so vectors match a deepseek-rag index built
with the same encoder. Vectors are unit length; cosine and dot product rank the same.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from deepseek_rag import DualEncoder, EncoderConfig
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import PrivateAttr


class DeepSeekRAGEmbedding(BaseEmbedding):
    """Embed queries and texts with a deepseek-rag ``DualEncoder``.

    >>> embed_model = DeepSeekRAGEmbedding()                         # bundled all-MiniLM-L6-v2
    >>> embed_model = DeepSeekRAGEmbedding(model="./my-finetuned")   # any local model folder
    >>> embed_model = DeepSeekRAGEmbedding(encoder=retriever.index.encoder)  # the index's own encoder

    ``model`` defaults to the ``DEEPSEEK_RAG_MODEL`` environment variable, as the CLI's ``--model`` does.
    """

    _encoder: DualEncoder = PrivateAttr()

    def __init__(
        self,
        model: str | None = None,
        encoder: DualEncoder | None = None,
        adapter: str | None = None,
        embed_batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        if encoder is not None and (model is not None or adapter is not None):
            raise ValueError("pass encoder= or model=/adapter=, not both")
        if encoder is None:
            model = model or os.environ.get("DEEPSEEK_RAG_MODEL") or None
            encoder = DualEncoder(EncoderConfig(model=model, adapter=adapter))
        super().__init__(model_name=encoder.model_name, embed_batch_size=embed_batch_size, **kwargs)
        self._encoder = encoder

    @classmethod
    def class_name(cls) -> str:
        return "DeepSeekRAGEmbedding"

    @property
    def encoder(self) -> DualEncoder:
        return self._encoder

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encoder.encode_documents(list(texts)).tolist()

    # Encoding is compute-bound: run it in a worker thread so the event loop stays free.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
