"""Precise passages: match small chunks, return a bounded window of text around each.

An index cut into small chunks (``--chunk-tokens 128``) matches a question against short, focused units —
what a sentence-embedding model like MiniLM reads best — but a 128-token unit can end mid-clause. With
``window_tokens=n`` each hit grows to a window of about ``n`` encoder tokens: the matched chunk in the
middle, the text of its neighbours on both sides (cut at word starts; a side that runs out gives its share
to the other). Offsets stay exact: ``hit.text == document.text[hit.start:hit.end]``. A hit whose matched
chunk already lies inside a better hit's window adds no text of its own and is dropped, so ``k`` results
are ``k`` different passages (the retriever fetches extra candidates to make up for the dropped ones).

This is LlamaIndex's sentence-window idea with the index's own chunks as the sentences. It does not search
or rank; ``retriever.py`` calls it on ranked hits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..documents import Hit
from ..errors import InvalidInputError
from .protocol import IndexView

logger = logging.getLogger(__name__)

MAX_WINDOW_TOKENS = 8192


def check_window_tokens(value: Any) -> int | None:
    """None (off) or a whole number of tokens from 1 to ``MAX_WINDOW_TOKENS``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOW_TOKENS:
        raise InvalidInputError(f"window_tokens={value!r} must be a whole number from 1 to {MAX_WINDOW_TOKENS}, or None (off)")
    return value


Offsets = Callable[[str], list[tuple[int, int]]]
"""A text's token character ranges: ``DualEncoder.token_offsets``."""


def _offsets(offsets: Offsets, text: str) -> list[tuple[int, int]]:
    return list(offsets(text)) if text else []


def _inside_word(text: str, position: int) -> bool:
    return 0 < position < len(text) and text[position - 1].isalnum() and text[position].isalnum()


def bounded_window(view: IndexView, hit: Hit, window_tokens: int, offsets: Offsets) -> Hit:
    """``hit`` grown with its neighbours' text to at most about ``window_tokens`` tokens (never shrunk)."""
    spare = window_tokens - len(_offsets(offsets, hit.text))
    if spare <= 0:
        return hit
    neighbours = {c.ordinal: c for c in view.chunks_of(hit.doc_id, hit.ordinal - 1, hit.ordinal + 1)}
    previous, following = neighbours.get(hit.ordinal - 1), neighbours.get(hit.ordinal + 1)
    before = view.document_span(hit.doc_id, previous.start, hit.start) if previous and previous.start < hit.start else ""
    after = view.document_span(hit.doc_id, hit.end, following.end) if following and following.end > hit.end else ""
    before_tokens, after_tokens = _offsets(offsets, before), _offsets(offsets, after)
    take_before = min(len(before_tokens), max(spare // 2, spare - len(after_tokens)))
    take_after = min(len(after_tokens), spare - take_before)
    start, end = hit.start, hit.end
    if take_before:
        cut = before_tokens[len(before_tokens) - take_before][0]
        while _inside_word(before, cut):  # never start mid-word: give up the rest of that word
            cut += 1
        start = hit.start - (len(before) - cut)
    if take_after:
        cut = after_tokens[take_after - 1][1]
        while _inside_word(after, cut):  # never end mid-word
            cut -= 1
        end = hit.end + cut
    text = view.document_span(hit.doc_id, start, end)
    lead, trail = len(text) - len(text.lstrip()), len(text) - len(text.rstrip())  # whitespace a cut left at an end
    if (start + lead, end - trail) == (hit.start, hit.end):
        return hit
    return Hit(hit.chunk_id, hit.doc_id, hit.score, start + lead, end - trail, text[lead : len(text) - trail],
               hit.ordinal, hit.section, hit.metadata)


def windowed(view: IndexView, hits: list[Hit], k: int, window_tokens: int, offsets: Offsets) -> list[Hit]:
    """The first ``k`` hits grown to windows, skipping hits whose matched chunk a better window already holds."""
    out: list[Hit] = []
    for hit in hits:
        if len(out) >= k:
            break
        if any(w.doc_id == hit.doc_id and w.start <= hit.start and hit.end <= w.end for w in out):
            continue
        out.append(bounded_window(view, hit, window_tokens, offsets))
    return out
