"""Two-stage ranking for a query about one document: whether to rank inside it first, and with which words.

A question such as "Consider the Acme lease between A and B; who repairs the roof?" is about one document
among many. Ranking every chunk of the corpus against the whole question mixes two jobs: the words that
*name* the document (its title, its parties) pull every chunk of that document — and the chunks that repeat
those names most — ahead of the chunk that answers. Doing the jobs one after the other works far better:
rank documents with the whole query, then rank the chunks of the best one with the *question part* only.

This module holds the per-query rule (:func:`decide_focus`) and the text helpers it rests on; the retriever
runs the searches. The signals (the README's CUAD table measures the first; see ``DEFAULT_MIN_GAP`` for the second):

* **the query names the best document**: its title (metadata ``title``; for files the file stem) occurs in
  the query as a whole phrase. Then the part of the query that names it is dropped for the second stage
  (:func:`question_part`).
* **the best document leads clearly**: its fused document score is ahead of the second's by
  ``min_gap`` (hybrid weighted fusion only, where document scores share one [0, 1] scale).
* **it can fill the answer**: the focused document must hold at least ``top_k`` matching chunks; a short
  document (an abstract, an FAQ answer) is never focused on by the rule, so corpora of short documents keep
  their plain ranking exactly.

It does not search, encode or fuse anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FOCUS_AUTO = "auto"
DEFAULT_MIN_GAP: float | None = None
"""Lead of the best document's fused score over the second's that focuses without a title match (None: off).

Off by default: on CUAD the title signal alone focuses 432 of 438 questions (first 40 training contracts),
and a score gap is not yet measured to help anywhere, while it could focus a query whose answers span
documents."""
MIN_TITLE_CHARS = 4
"""Shorter titles ("A", "Q3") name nothing reliably and never trigger focus."""

_WORD = re.compile(r"\w+")
# Segment ends: ; : ? ! and a line break (CJK forms too), and a full stop before an upper-case letter
# (a new sentence; "Inc. and" is not one).
_SEGMENT_END = re.compile(r"[;:?!\n；：？！。]+|\.(?=\s+[A-Z])")
_STRONG_END = re.compile(r"[;:\n；：]+")


@dataclass(frozen=True)
class FocusDecision:
    """What the rule decided for one query: the documents to rank inside (none: plain ranking) and the text
    to rank their chunks with; ``reason`` is ``"title"``, ``"gap"``, ``"explicit"`` or ``""``."""

    doc_ids: tuple[str, ...]
    question: str
    reason: str = ""

    @property
    def focused(self) -> bool:
        return bool(self.doc_ids)


def _normalised(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def names_document(query: str, title: str | None) -> bool:
    """Whether ``query`` contains ``title`` as a whole phrase (case, punctuation and spacing ignored)."""
    if not title:
        return False
    wanted = _normalised(title)
    if len(wanted) < MIN_TITLE_CHARS:
        return False
    return f" {wanted} " in f" {_normalised(query)} "


def _segments(query: str) -> list[tuple[int, int]]:
    """(start, end) of the query's clauses, split after the separators of ``_SEGMENT_END``."""
    bounds, start = [], 0
    for match in _SEGMENT_END.finditer(query):
        bounds.append((start, match.end()))
        start = match.end()
    bounds.append((start, len(query)))
    return [(s, e) for s, e in bounds if query[s:e].strip()]


def question_part(query: str, title: str | None) -> str | None:
    """``query`` without the part that names the document ``title``; None when it does not name it.

    What follows the last ``;``, ``:`` or line break after the title is the question ("Consider the Acme lease
    between A; B and C; who repairs the roof?" → "who repairs the roof?": party lists often hold ``;``). Without
    one, the sentence or clause holding the title goes, keeping what follows it (or, when nothing follows,
    what comes before it: "Who repairs the roof? Acme lease" → "Who repairs the roof?"); a query of one
    clause loses the title phrase only ("what does the Acme lease say about repairs" → "what does the say
    about repairs").
    """
    if not names_document(query, title):
        return None
    words = [re.escape(w) for w in _WORD.findall(title or "")]
    found = re.search(r"\W+".join(words), query, flags=re.IGNORECASE)
    title_end = found.end() if found else 0
    strong = [m.end() for m in _STRONG_END.finditer(query, title_end)]
    if strong and _WORD.search(query[strong[-1]:]):
        return query[strong[-1]:].strip()
    segments = _segments(query)
    naming = [i for i, (s, e) in enumerate(segments) if names_document(query[s:e], title)]
    if naming and len(segments) > 1:
        after = query[segments[naming[-1]][1]:].strip()
        if _WORD.search(after):
            return after
        before = query[: segments[naming[0]][0]].strip()
        if _WORD.search(before):
            return before
    stripped = re.sub(r"\W+".join(words), " ", query, flags=re.IGNORECASE) if words else query
    stripped = " ".join(stripped.split())
    return stripped if _WORD.search(stripped) else query


def decide_focus(
    query: str,
    documents: Sequence[tuple[str, float, str | None]],
    *,
    min_gap: float | None = DEFAULT_MIN_GAP,
) -> FocusDecision:
    """The rule for one query, given its document ranking as ``(doc_id, score, title)``, best first.

    Focus on the best document when the query names it (then rank with :func:`question_part`) or, with
    ``min_gap`` set, when its score leads the second's by at least that much. Whether the document can fill
    the answer is checked by the caller, which has run the focused search.
    """
    if not documents:
        return FocusDecision((), query)
    best, score, title = documents[0]
    question = question_part(query, title)
    if question is not None:
        return FocusDecision((best,), question, "title")
    if min_gap is not None:
        second = documents[1][1] if len(documents) > 1 else 0.0
        if score - second >= min_gap:
            return FocusDecision((best,), query, "gap")
    return FocusDecision((), query)


def explicit_focus(query: str, documents: Sequence[tuple[str, float, str | None]]) -> FocusDecision:
    """``focus_documents=n`` given by the caller: always these documents; the question part when the query
    names one of them."""
    for _, _, title in documents:
        question = question_part(query, title)
        if question is not None:
            return FocusDecision(tuple(d for d, _, _ in documents), question, "explicit")
    return FocusDecision(tuple(d for d, _, _ in documents), query, "explicit")
