"""Encoding: the dual encoder (prefixes, tokenization, batching) and the backends that run its forward pass."""
