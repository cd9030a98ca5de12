"""DeepSeekRAGRetriever: a deepseek-rag index behind LangChain's ``BaseRetriever``.

Each hit becomes a ``Document`` whose ``page_content`` is the chunk text and whose metadata holds the
document's own metadata plus ``doc_id``, ``start``/``end`` (character offsets: ``text == source[start:end]``),
``score`` (higher is better), ``ordinal`` and ``section``; its ``id`` is ``"{doc_id}::{ordinal}"`` (the
document id at ``level="document"``). Searching stays in ``deepseek_rag``; this module only translates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from deepseek_rag import DocumentIndex, DualEncoder, EncoderConfig, IndexSettings
from deepseek_rag import Document as CoreDocument
from deepseek_rag.retrieval.retriever import Hit, Retriever
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)


class DeepSeekRAGRetriever(BaseRetriever):
    """Chunked long-document retrieval (dual encoder + FAISS + SQLite) as a LangChain retriever.

    >>> retriever = DeepSeekRAGRetriever.from_documents(docs, k=4)       # bundled MiniLM, offline
    >>> retriever = DeepSeekRAGRetriever(index_dir="contracts.idx", k=4)  # a `deepseek-rag index` folder
    >>> retriever.invoke("who may terminate?", k=2, filters={"kind": "contract"})
    """

    index: Any = Field(default=None, exclude=True, description="A deepseek_rag.DocumentIndex (or give index_dir).")
    index_dir: str | None = Field(default=None, description="Index folder to open when `index` is not given.")
    model: str | None = Field(default=None, description="Local model folder for the encoder; None = the index's own.")
    k: int = Field(default=4, description="Documents returned per query (overridable per call: invoke(q, k=2)).")
    filters: dict[str, Any] | None = Field(
        default=None, description='Metadata filter expression, e.g. {"year": {"$gte": 2021}, "kind": ["a", "b"]}; key "doc_id" filters on document id.'
    )
    level: Literal["chunk", "document"] = Field(default="chunk", description="One result per chunk or per document.")
    expand_neighbors: int = Field(default=0, description="Neighbouring chunks added to each hit on each side.")
    aggregation: Literal["max", "softmax", "topk_sum"] = Field(
        default="max", description="How chunk scores make a document score at document level."
    )
    nprobe: int | None = Field(default=None, description="IVF lists searched per query; None = the index default.")
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(
        default=None, description="Search mode where the core supports it; None = the core's default for the index."
    )

    focus_documents: int | Literal["auto"] = Field(
        default="auto",
        description="Two-stage ranking for questions about one long document: 'auto' ranks inside the document the "
                    "query names when it can fill k; n: chunks of the best n documents only; 0: off.",
    )

    window_tokens: int | None = Field(
        default=None,
        description="At chunk level, grow each result to a window of about this many tokens around the matched "
                    "chunk (exact offsets); None: chunks as indexed. Not with expand_neighbors.",
    )

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @model_validator(mode="after")
    def _open_index(self) -> DeepSeekRAGRetriever:
        if self.index is None:
            if self.index_dir is None:
                raise ValueError(
                    "give index= (a deepseek_rag.DocumentIndex) or index_dir= (a folder built by `deepseek-rag index`), "
                    "or build one with DeepSeekRAGRetriever.from_documents(...)"
                )
            encoder = DualEncoder(EncoderConfig(model=self.model)) if self.model else None
            self.index = DocumentIndex.load(self.index_dir, encoder)
        elif not isinstance(self.index, DocumentIndex):
            raise TypeError(f"index must be a deepseek_rag.DocumentIndex, got {type(self.index).__name__}")
        self._core(self.k)  # validate k, level, aggregation, expand_neighbors now, not at the first query
        return self

    # ------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_documents(
        cls,
        documents: Iterable[Document | CoreDocument],
        *,
        ids: Sequence[str] | None = None,
        encoder: DualEncoder | None = None,
        model: str | None = None,
        index_spec: str = "auto",
        chunking: Any = None,
        contextual_headers: bool = True,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> DeepSeekRAGRetriever:
        """Chunk, embed and index LangChain ``Document``s in memory (``retriever.index.save(dir)`` keeps them).

        A document's id is ``ids[i]`` when given, else ``document.id``, else its position as a string.
        """
        documents = list(documents)
        if ids is not None and len(ids) != len(documents):
            raise ValueError(f"got {len(ids)} ids for {len(documents)} documents; give one id per document")
        core_documents = [_to_core_document(doc, ids[i] if ids is not None else None, i) for i, doc in enumerate(documents)]
        if encoder is not None and model is not None:
            raise ValueError("pass encoder= or model=, not both")
        if encoder is None and model is not None:
            encoder = DualEncoder(EncoderConfig(model=model))
        settings = IndexSettings(index_spec=index_spec, contextual_headers=contextual_headers,
                                 **({"chunking": chunking} if chunking is not None else {}))
        index = DocumentIndex.build(core_documents, encoder, settings, progress=progress)
        return cls(index=index, model=model, **kwargs)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DeepSeekRAGRetriever:
        """:meth:`from_documents` for plain strings (with optional metadata dicts)."""
        texts = list(texts)
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        if len(metadatas) != len(texts):
            raise ValueError(f"got {len(metadatas)} metadata dicts for {len(texts)} texts")
        return cls.from_documents(
            [Document(page_content=t, metadata=m) for t, m in zip(texts, metadatas)], ids=ids, **kwargs
        )

    @classmethod
    def from_index_dir(
        cls, index_dir: str | Path, *, encoder: DualEncoder | None = None, **kwargs: Any
    ) -> DeepSeekRAGRetriever:
        """Open an index folder built by ``deepseek-rag index`` (or ``DocumentIndex.save``)."""
        if encoder is not None:
            return cls(index=DocumentIndex.load(index_dir, encoder), index_dir=str(index_dir), **kwargs)
        return cls(index_dir=str(index_dir), **kwargs)

    # ------------------------------------------------------------------------------------ retrieval
    def _core(self, k: int) -> Retriever:
        # Built per call (cheap: validation only) so changes to the fields after construction take effect.
        return Retriever(
            self.index, top_k=k, level=self.level, aggregation=self.aggregation,
            expand_neighbors=self.expand_neighbors, nprobe=self.nprobe, filters=self.filters,
            focus_documents=self.focus_documents, window_tokens=self.window_tokens,
            **({"mode": self.mode} if self.mode is not None else {}),
        )

    def _search(self, query: str, k: int | None, filters: dict[str, Any] | None) -> list[Document]:
        retriever = self._core(self.k if k is None else k)
        if self.level == "document":
            return [
                _to_langchain_document(doc.hits[0], doc.score, doc.doc_id)
                for doc in retriever.retrieve_documents(query, filters=filters)
            ]
        return [
            _to_langchain_document(hit, hit.score, f"{hit.doc_id}::{hit.ordinal}")
            for hit in retriever.retrieve(query, filters=filters)
        ]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Document]:
        return self._search(query, k, filters)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Document]:
        # Encoding and FAISS search are compute-bound: a worker thread keeps the event loop free.
        return await asyncio.to_thread(self._search, query, k, filters)


def _to_core_document(doc: Document | CoreDocument, given_id: str | None, position: int) -> CoreDocument:
    if isinstance(doc, CoreDocument):
        return doc if given_id is None else CoreDocument(given_id, doc.text, dict(doc.metadata))
    if not isinstance(doc, Document):
        raise TypeError(f"expected LangChain Documents, got {type(doc).__name__}")
    return CoreDocument(id=str(given_id or doc.id or position), text=doc.page_content, metadata=dict(doc.metadata))


def _to_langchain_document(hit: Hit, score: float, result_id: str) -> Document:
    metadata = {
        **hit.metadata,
        "doc_id": hit.doc_id,
        "start": hit.start,
        "end": hit.end,
        "score": score,
        "ordinal": hit.ordinal,
        "section": hit.section,
    }
    return Document(page_content=hit.text, metadata=metadata, id=result_id)
