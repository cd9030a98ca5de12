"""Ingestion: files and records become documents, documents become chunks — pure functions a Dask worker can run."""
