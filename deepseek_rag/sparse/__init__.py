"""The lexical side: language-aware analysis and BM25 over the same chunks the vectors hold."""
