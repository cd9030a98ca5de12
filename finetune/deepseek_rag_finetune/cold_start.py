"""Pairs for a user who has none: pseudo-queries cut from the corpus itself, or questions an LLM writes.

Two cheap signals with no model at all: a document's title asks for its passages (title → chunk), and a
sentence is answered by the passage around it (sentence → its surrounding chunk, the sentence removed so
the pair is not a copy). With an LLM (any LlamaIndex LLM, or anything with ``complete(prompt)`` returning
an object with ``.text`` or a string), it writes one question per chunk. Pairs are only as good as these
signals; real user queries, even a few hundred, beat them. This module does not train or mine.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

from deepseek_rag.documents import Document
from deepseek_rag.errors import InvalidInputError

from .pairs import TrainingPair

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
QUESTION_PROMPT = (
    "Write one question a person might search for that the passage below answers. "
    "Reply with the question only, on one line.\n\nPassage:\n{passage}\n\nQuestion:"
)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def chunk_words(text: str, max_words: int = 120, stride: int | None = None) -> list[str]:
    """Windows of up to ``max_words`` words (by whitespace; CJK text without spaces stays one window per 400 chars)."""
    words = text.split()
    if len(words) <= 1 and len(text) > 400:
        return [text[i : i + 400] for i in range(0, len(text), 400)]
    stride = stride or max_words
    return [" ".join(words[i : i + max_words]) for i in range(0, max(1, len(words) - max_words + stride), stride)]


def pseudo_pairs(documents: Iterable[Document], *, max_words: int = 120, sentences_per_chunk: int = 1,
                 min_sentence_words: int = 5, use_titles: bool = True, seed: int = 0) -> list[TrainingPair]:
    """Title → chunk and sentence → rest-of-chunk pairs from ``documents`` (deterministic for a seed)."""
    rng = random.Random(seed)
    pairs: list[TrainingPair] = []
    for doc in documents:
        if not isinstance(doc, Document):
            raise InvalidInputError(f"pseudo_pairs takes Document objects, got {type(doc).__name__}; see deepseek_rag.load_documents")
        for chunk in chunk_words(doc.text, max_words):
            if use_titles and doc.title and doc.title.strip():
                pairs.append(TrainingPair(doc.title.strip(), chunk))
            sentences = [s for s in split_sentences(chunk) if len(s.split()) >= min_sentence_words]
            if len(sentences) < 2:
                continue
            for sentence in rng.sample(sentences, min(sentences_per_chunk, len(sentences))):
                rest = chunk.replace(sentence, " ").strip()
                if len(rest.split()) >= min_sentence_words:
                    pairs.append(TrainingPair(sentence, " ".join(rest.split())))
    if not pairs:
        raise InvalidInputError("no pseudo-pairs could be made: documents need titles or chunks of two or more sentences")
    return pairs


def _completion_text(response: Any) -> str:
    text = getattr(response, "text", response)
    return str(text or "").strip()


def llm_pairs(llm: Any, passages: Sequence[str], *, prompt: str = QUESTION_PROMPT, max_pairs: int | None = None,
              progress: bool = False) -> list[TrainingPair]:
    """One LLM-written question per passage (``llm.complete(prompt)``); empty or failed answers are skipped."""
    from tqdm.auto import tqdm

    if not hasattr(llm, "complete"):
        raise InvalidInputError(f"llm must have a complete(prompt) method (a LlamaIndex LLM), got {type(llm).__name__}")
    if "{passage}" not in prompt:
        raise InvalidInputError("the prompt must contain '{passage}' where the passage goes")
    chosen = list(passages)[: max_pairs or None]
    pairs: list[TrainingPair] = []
    failures = 0
    for passage in tqdm(chosen, desc="llm questions", disable=not progress):
        try:
            question = _completion_text(llm.complete(prompt.format(passage=passage)))
        except Exception as exc:  # one failed call (rate limit, timeout) should not lose the rest
            failures += 1
            logger.warning("LLM call failed, passage skipped: %s", exc)
            continue
        question = question.splitlines()[0].strip().strip('"') if question else ""
        question = re.sub(r"^(question|q)\s*[:：]\s*", "", question, flags=re.IGNORECASE)
        if question:
            pairs.append(TrainingPair(question, passage))
    if failures:
        logger.warning("%d of %d LLM calls failed", failures, len(chosen))
    return pairs
