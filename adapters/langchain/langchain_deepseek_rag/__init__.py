"""LangChain integration for deepseek-rag: a retriever over a deepseek-rag index, and its dual encoder as Embeddings."""

from langchain_deepseek_rag.embeddings import DeepSeekRAGEmbeddings
from langchain_deepseek_rag.retrievers import DeepSeekRAGRetriever

__all__ = ["DeepSeekRAGRetriever", "DeepSeekRAGEmbeddings"]
