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
    "ChunkingConfig": "chunking",
    "chunk_document": "chunking",
    "DualEncoder": "encoder",
    "EncoderConfig": "encoder",
    "VectorIndex": "index",
    "ChunkStore": "store",
    "DocumentIndex": "document_index",
    "IndexSettings": "document_index",
    "Retriever": "retriever",
    "SparseConfig": "sparse",
    "SparseIndex": "sparse",
    "Analyzer": "analysis",
    "detect_language": "language",
    "reciprocal_rank_fusion": "fusion",
    "weighted_score_fusion": "fusion",
    "Hit": "retriever",
    "answer": "generation",
    "Answer": "generation",
    "Source": "generation",
    "DocumentHit": "retriever",
    "load_documents": "loaders",
    "load_beir_corpus": "loaders",
    "documents_from_records": "loaders",
    "DeepSeekRAGError": "errors",
    "InvalidInputError": "errors",
    "IndexFormatError": "errors",
    "EncoderMismatchError": "errors",
    "IndexSpecError": "errors",
    "DocumentNotFoundError": "errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .chunking import ChunkingConfig, chunk_document
    from .document_index import DocumentIndex, IndexSettings
    from .generation import Answer, Source, answer
    from .documents import Chunk, Document
    from .encoder import DualEncoder, EncoderConfig
    from .errors import (
        DeepSeekRAGError,
        DocumentNotFoundError,
        EncoderMismatchError,
        IndexFormatError,
        IndexSpecError,
        InvalidInputError,
    )
    from .index import VectorIndex
    from .loaders import documents_from_records, load_beir_corpus, load_documents
    from .analysis import Analyzer
    from .fusion import reciprocal_rank_fusion, weighted_score_fusion
    from .language import detect_language
    from .retriever import DocumentHit, Hit, Retriever
    from .sparse import SparseConfig, SparseIndex
    from .store import ChunkStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepseek_rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
