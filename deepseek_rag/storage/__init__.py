"""Storage: the SQLite chunk store, the index directory's layout, immutable versions and the writer lock."""
