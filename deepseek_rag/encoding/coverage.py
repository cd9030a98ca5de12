"""How much of a text an encoder can read: the share of its tokens that are not the unknown token.

The bundled English MiniLM turns 72% of the tokens of Chinese medical text into ``[UNK]``; vectors of such
text say little, and encoding it costs most of an index build for nothing. ``--dense auto`` builds the BM25 side
only when a sample of the corpus reads below :data:`READABLE_SHARE`, and ``densify`` refuses an encoder that
cannot read the index's text (``Retriever`` applies the same rule to each query). Tokenizers without an unknown
token (byte-level BPE) read everything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

READABLE_SHARE = 0.5
"""An encoder that reads under this share of a corpus's tokens is not used to embed it (``dense="auto"``)."""
SAMPLE_TEXTS = 256
"""Texts looked at, evenly spaced over the corpus (the first 2,000 characters of each)."""


@dataclass(frozen=True)
class Coverage:
    """What an encoder's tokenizer made of a sample: tokens seen, tokens it knew, texts sampled."""

    tokens: int
    known: int
    texts: int

    @property
    def readable_share(self) -> float:
        """Share of tokens that are not the unknown token (1.0 for an empty sample)."""
        return self.known / self.tokens if self.tokens else 1.0

    @property
    def readable(self) -> bool:
        return self.readable_share >= READABLE_SHARE

    def describe(self, encoder_name: str) -> str:
        return (f"{encoder_name} reads {self.readable_share:.0%} of the tokens of a sample of {self.texts} chunks "
                f"(the rest are its unknown token)")


def evenly_spaced(texts: Sequence[str], n: int = SAMPLE_TEXTS) -> list[str]:
    """At most ``n`` of ``texts``, evenly spaced (all of them when there are fewer)."""
    if len(texts) <= n:
        return list(texts)
    step = len(texts) / n
    return [texts[int(i * step)] for i in range(n)]


def token_coverage(tokenizer, texts: Sequence[str]) -> Coverage:
    """How many of the tokens of ``texts`` (a sample: see :func:`evenly_spaced`) ``tokenizer`` knows."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    sample = [t[:2000] for t in evenly_spaced(texts) if t.strip()]
    if unknown is None or not sample:
        return Coverage(0, 0, len(sample))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the Rust tokenizer directly, in one batch
        id_lists = [e.ids for e in backend.encode_batch(sample, add_special_tokens=False)]
    else:
        id_lists = tokenizer(sample, add_special_tokens=False)["input_ids"]
    tokens = sum(len(ids) for ids in id_lists)
    known = tokens - sum(ids.count(unknown) for ids in id_lists)
    return Coverage(tokens, known, len(sample))
