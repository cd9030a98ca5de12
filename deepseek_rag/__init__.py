"""deepseek-rag: chunked long-document retrieval for LLM applications.

Long documents go in; the chunks that answer a question come out, ranked, with their place in the
source. Nothing heavy is imported until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "Document": "documents",
    "Chunk": "documents",
    "Hit": "documents",
    "DocumentHit": "documents",
    "ChunkingConfig": "ingest.chunking",
    "chunk_document": "ingest.chunking",
    "load_documents": "ingest.loaders",
    "load_beir_corpus": "ingest.loaders",
    "documents_from_records": "ingest.loaders",
    "detect_language": "ingest.language",
    "DualEncoder": "encoding.dual_encoder",
    "EncoderConfig": "encoding.dual_encoder",
    "export_encoder": "encoding.export",
    "VectorStore": "vectors.base",
    "FaissVectorStore": "vectors.faiss_store",
    "VectorIndex": "vectors.faiss_store",
    "Filter": "vectors.filters",
    "ChunkStore": "storage.chunk_store",
    "Snapshot": "storage.snapshot",
    "DocumentIndex": "document_index",
    "IndexSettings": "settings",
    "IndexHandle": "index_handle",
    "Retriever": "retrieval.retriever",
    "SparseConfig": "sparse.bm25",
    "SparseIndex": "sparse.bm25",
    "Analyzer": "sparse.analysis",
    "reciprocal_rank_fusion": "retrieval.fusion",
    "weighted_score_fusion": "retrieval.fusion",
    "answer": "generation",
    "Answer": "generation",
    "Source": "generation",
    "DeepSeekRAGError": "errors",
    "InvalidInputError": "errors",
    "IndexFormatError": "errors",
    "EncoderMismatchError": "errors",
    "IndexSpecError": "errors",
    "DocumentNotFoundError": "errors",
    "IndexLockedError": "errors",
    "ReadOnlyIndexError": "errors",
    "MissingDependencyError": "errors",
    "LLMError": "errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .document_index import DocumentIndex
    from .settings import IndexSettings
    from .documents import Chunk, Document, DocumentHit, Hit
    from .encoding.dual_encoder import DualEncoder, EncoderConfig
    from .encoding.export import export_encoder
    from .errors import (
        DeepSeekRAGError,
        DocumentNotFoundError,
        EncoderMismatchError,
        IndexFormatError,
        IndexLockedError,
        IndexSpecError,
        InvalidInputError,
        MissingDependencyError,
        LLMError,
        ReadOnlyIndexError,
    )
    from .generation import Answer, Source, answer
    from .index_handle import IndexHandle
    from .ingest.chunking import ChunkingConfig, chunk_document
    from .ingest.language import detect_language
    from .ingest.loaders import documents_from_records, load_beir_corpus, load_documents
    from .retrieval.fusion import reciprocal_rank_fusion, weighted_score_fusion
    from .retrieval.retriever import Retriever
    from .sparse.analysis import Analyzer
    from .sparse.bm25 import SparseConfig, SparseIndex
    from .storage.chunk_store import ChunkStore
    from .storage.snapshot import Snapshot
    from .vectors.base import VectorStore
    from .vectors.faiss_store import FaissVectorStore, VectorIndex
    from .vectors.filters import Filter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepseek_rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
