"""Retrieval: query in, ranked chunk or document hits out — against the small ``SearchableIndex`` protocol."""
