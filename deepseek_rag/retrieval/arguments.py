"""Checks of what a caller passes a retriever — ``top_k``, query texts, one-of choices, ``focus_documents`` — each
failing with an :class:`~deepseek_rag.errors.InvalidInputError` that names the bad value and what to give instead.

It does not search.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..ingest.decoding import describe_surrogate, lone_surrogate
from .focus import FOCUS_AUTO

logger = logging.getLogger(__name__)

MAX_TOP_K = 10_000
MAX_QUERY_CHARS = 20_000


def check_focus_documents(value: Any) -> int | str:
    """``"auto"``, or a whole number >= 0 (0 = off); anything else is an error naming the value."""
    if value == FOCUS_AUTO:
        return FOCUS_AUTO
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInputError(f"focus_documents={value!r} must be 'auto' or a whole number >= 0 (0 = off)")
    return int(value)


def check_top_k(top_k: Any) -> int:
    """``top_k`` as an int from 1 to ``MAX_TOP_K``."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise InvalidInputError(f"top_k must be a whole number, got {top_k!r}")
    if top_k <= 0:
        raise InvalidInputError(f"top_k={top_k} must be at least 1")
    if top_k > MAX_TOP_K:
        raise InvalidInputError(f"top_k={top_k} is too large; ask for at most {MAX_TOP_K} results")
    return int(top_k)


def check_queries(queries: Sequence[str]) -> list[str]:
    """A batch of non-empty UTF-8 query texts up to ``MAX_QUERY_CHARS`` each, as a list."""
    if isinstance(queries, str):
        raise InvalidInputError("pass a list of queries to the batch methods (wrap one query: [query])")
    checked = []
    for query in queries:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query {query!r} is empty; give some text to search for")
        surrogate = lone_surrogate(query)
        if surrogate is not None:
            raise InvalidInputError(
                f"query holds {describe_surrogate(query, surrogate)}; pass UTF-8 text (on a terminal, check that "
                "LANG / LC_ALL name a UTF-8 locale)"
            )
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInputError(
                f"query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,} (the encoder reads only its "
                "first few hundred tokens). Shorten it, or index the text and search with a question about it."
            )
        checked.append(query)
    return checked


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` when it is one of ``allowed``; else an error naming the option ``name`` and the choices."""
    if value not in allowed:
        raise InvalidInputError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value
