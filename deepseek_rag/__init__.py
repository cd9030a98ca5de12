"""deepseek-rag: chunked long-document retrieval for LLM applications.

Long documents go in; the chunks that answer a question come out, ranked, with their place in the
source. Nothing heavy is imported until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Document": "documents",
    "Chunk": "documents",
    "ChunkingConfig": "ingest.chunking",
    "chunk_document": "ingest.chunking",
    "DualEncoder": "encoding.dual_encoder",
    "EncoderConfig": "encoding.dual_encoder",
    "VectorIndex": "vectors.faiss_store",
    "ChunkStore": "storage.chunk_store",
    "DocumentIndex": "document_index",
    "IndexSettings": "document_index",
    "Retriever": "retrieval.retriever",
    "SparseConfig": "sparse.bm25",
    "SparseIndex": "sparse.bm25",
    "Analyzer": "sparse.analysis",
    "detect_language": "ingest.language",
    "reciprocal_rank_fusion": "retrieval.fusion",
    "weighted_score_fusion": "retrieval.fusion",
    "Hit": "retrieval.retriever",
    "answer": "generation",
    "Answer": "generation",
    "Source": "generation",
    "DocumentHit": "retrieval.retriever",
    "load_documents": "ingest.loaders",
    "load_beir_corpus": "ingest.loaders",
    "documents_from_records": "ingest.loaders",
    "DeepSeekRAGError": "errors",
    "InvalidInputError": "errors",
    "IndexFormatError": "errors",
    "EncoderMismatchError": "errors",
    "IndexSpecError": "errors",
    "DocumentNotFoundError": "errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .ingest.chunking import ChunkingConfig, chunk_document
    from .document_index import DocumentIndex, IndexSettings
    from .generation import Answer, Source, answer
    from .documents import Chunk, Document
    from .encoding.dual_encoder import DualEncoder, EncoderConfig
    from .errors import (
        DeepSeekRAGError,
        DocumentNotFoundError,
        EncoderMismatchError,
        IndexFormatError,
        IndexSpecError,
        InvalidInputError,
    )
    from .vectors.faiss_store import VectorIndex
    from .ingest.loaders import documents_from_records, load_beir_corpus, load_documents
    from .sparse.analysis import Analyzer
    from .retrieval.fusion import reciprocal_rank_fusion, weighted_score_fusion
    from .ingest.language import detect_language
    from .retrieval.retriever import DocumentHit, Hit, Retriever
    from .sparse.bm25 import SparseConfig, SparseIndex
    from .storage.chunk_store import ChunkStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepseek_rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
