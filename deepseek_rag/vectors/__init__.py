"""Vectors: the ``VectorStore`` protocol, the backend-neutral ``Filter``, and the FAISS backend."""
