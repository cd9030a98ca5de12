"""DeepSeekRAGEmbeddings: deepseek-rag's dual encoder as LangChain ``Embeddings``.

Queries go through the encoder's query side (prefix, query LoRA adapter), documents through its document
side, so vectors match a deepseek-rag index built with the same encoder. Vectors are unit length.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from deepseek_rag import DualEncoder, EncoderConfig
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator


class DeepSeekRAGEmbeddings(BaseModel, Embeddings):
    """Embed queries and documents with a deepseek-rag ``DualEncoder``.

    >>> embeddings = DeepSeekRAGEmbeddings()                      # bundled all-MiniLM-L6-v2, offline
    >>> embeddings = DeepSeekRAGEmbeddings(model="./my-model", adapter="./my-adapter")
    >>> embeddings = DeepSeekRAGEmbeddings(encoder=retriever.index.encoder)
    """

    model: str | None = Field(
        default_factory=lambda: os.environ.get("DEEPSEEK_RAG_MODEL") or None,
        description="Local transformers / sentence-transformers folder; default $DEEPSEEK_RAG_MODEL, else bundled MiniLM.",
    )
    adapter: str | None = Field(default=None, description="LoRA adapter folder written by `deepseek-rag finetune`.")
    encoder: Any = Field(default=None, exclude=True, description="An already loaded deepseek_rag.DualEncoder.")
    batch_size: int | None = Field(default=None, description="Texts per forward pass; None = the encoder's own.")

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    _encoder: DualEncoder = PrivateAttr()

    @model_validator(mode="after")
    def _load_encoder(self) -> DeepSeekRAGEmbeddings:
        if self.encoder is not None:
            if not isinstance(self.encoder, DualEncoder):
                raise TypeError(f"encoder must be a deepseek_rag.DualEncoder, got {type(self.encoder).__name__}")
            self._encoder = self.encoder
        else:
            self._encoder = DualEncoder(EncoderConfig(model=self.model, adapter=self.adapter))
        return self

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.encode_documents(list(texts), batch_size=self.batch_size).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._encoder.encode_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
