from llama_index.retrievers.deepseek_rag.base import DeepSeekRAGRetriever
from llama_index.retrievers.deepseek_rag.embedding import DeepSeekRAGEmbedding

__all__ = ["DeepSeekRAGRetriever", "DeepSeekRAGEmbedding"]
