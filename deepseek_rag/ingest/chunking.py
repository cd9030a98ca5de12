"""Cut documents into token-bounded, overlapping chunks whose character offsets point into the source text.

Windows are counted in the encoder's own tokens (a Hugging Face *fast* tokenizer), so the model never
truncates a chunk. Each document is tokenized once; sentence ends, word starts and Markdown headings are
found once and looked up with binary search, so chunking is linear in the document length.

A window ends at the last sentence end inside it (English ``.?!`` before whitespace, any line break,
Chinese ``。！？；…``) when that keeps at least half the budget, else at the last word start, and only
inside a word when one word fills half the window. Windows cut inside a word, or whose tokens carry
whitespace that stripping removes (byte-level BPE), are re-tokenized and shrunk until they fit.
This module does not embed or store anything."""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..config import Config
from ..documents import Chunk, Document
from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

CHUNKING_MODES = ("token", "none")
# Tokenizers without a limit report model_max_length as a huge sentinel (int(1e30)).
_NO_LIMIT = 1_000_000
_SENTENCE_END = re.compile(
    r"[.?!]+[\"')\]’”]*(?=\s|$)"  # English: needs whitespace (or the end) after it, so 3.14 and e.g.x stay whole
    r"|[。！？；…]+[”’」』）]*"  # Chinese: no space follows
    r"|\n"
)
# A heading line; its title is group 1 less the closing run of spaces and #'s (see markdown_headings). Trimming
# that run in the pattern itself, with a lazy group, is quadratic in the line length: 72 s for one heading
# line of 80,000 spaces.
MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+)$", re.MULTILINE)


@dataclass
class ChunkingConfig(Config):
    """How documents are cut into chunks; saved as JSON beside an index so queries chunk the same way."""

    mode: str = field(
        default="token",
        metadata={"help": "'token': overlapping token windows; 'none': one chunk per document, truncated."},
    )
    max_tokens: int = field(
        default=256,
        metadata={"help": "Most tokens in a chunk; further capped by the model's max length minus special tokens."},
    )
    overlap: int = field(
        default=32, metadata={"help": "Tokens shared by consecutive chunks (approximate: starts fall on words)."}
    )
    snap_to_sentences: bool = field(
        default=True,
        metadata={"help": "End chunks at the last sentence end in the window when that keeps half the budget."},
    )
    min_tokens: int = field(
        default=16,
        metadata={
            "help": "The last chunk of a document starts early enough to hold at least this many tokens "
            "(re-using text of the chunk before), so no tiny trailing fragment is emitted."
        },
    )

    def __post_init__(self) -> None:
        if self.mode not in CHUNKING_MODES:
            raise InvalidInputError(f"ChunkingConfig.mode={self.mode!r} is not one of {CHUNKING_MODES}")
        for name in ("max_tokens", "overlap", "min_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"ChunkingConfig.{name} must be an int, got {value!r}")
        if self.max_tokens < 1:
            raise InvalidInputError(f"ChunkingConfig.max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.overlap < self.max_tokens:
            raise InvalidInputError(
                f"ChunkingConfig.overlap must be in [0, max_tokens={self.max_tokens}), got {self.overlap}; "
                "lower overlap or raise max_tokens"
            )
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise InvalidInputError(
                f"ChunkingConfig.min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}"
            )
        if not isinstance(self.snap_to_sentences, bool):
            raise InvalidInputError(f"ChunkingConfig.snap_to_sentences must be a bool, got {self.snap_to_sentences!r}")


def window_budget(tokenizer: Any, config: ChunkingConfig, *, reserved_tokens: int = 0) -> int:
    """Tokens a chunk may hold: ``max_tokens``, capped by the model length minus special and reserved tokens."""
    if reserved_tokens < 0:
        raise InvalidInputError(f"reserved_tokens must be >= 0, got {reserved_tokens}")
    budget = config.max_tokens
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and 0 < model_max < _NO_LIMIT:
        budget = min(budget, model_max - tokenizer.num_special_tokens_to_add() - reserved_tokens)
    else:
        budget -= reserved_tokens
    if budget < 1:
        raise InvalidInputError(
            f"no room for text: max_tokens={config.max_tokens}, model_max_length={model_max}, "
            f"reserved_tokens={reserved_tokens}; lower reserved_tokens"
        )
    return budget


def _tokenize(document: Document, tokenizer: Any, max_length: int | None) -> Any:
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInputError(
            f"chunking needs a fast (Rust) tokenizer for character offsets, got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )
    # verbose=False silences "sequence length is longer than the specified maximum": we cut windows ourselves.
    return tokenizer(
        document.text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        truncation=max_length is not None,
        max_length=max_length,
        verbose=False,
    )


def _word_starts(encoding: Any, starts: np.ndarray, ends: np.ndarray, text: str) -> np.ndarray:
    """Token indices ``i > 0`` before which a cut does not split a word (whitespace or a new CJK/alnum word)."""
    gap = starts[1:] > ends[:-1]
    word_ids = encoding.word_ids()
    if word_ids and None not in word_ids:
        ids = np.asarray(word_ids)
        new_word = (ids[1:] != ids[:-1]) & ~gap
        # A new "word" that is punctuation (BERT splits "fox." in two) is no place to cut; one that opens
        # with a space (byte-level BPE's "Ġfox") or a letter, digit or CJK character is.
        candidates = np.flatnonzero(new_word)
        chars = [text[position] for position in starts[candidates + 1].tolist()]
        new_word[candidates] = [char.isalnum() or char.isspace() for char in chars]
        gap |= new_word
    return np.flatnonzero(gap) + 1


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """``(line start, title)`` of every Markdown ATX heading (``## Title ##``) in ``text``, in linear time."""
    headings = []
    for match in MARKDOWN_HEADING.finditer(text):
        raw = match.group(1)
        # The closing sequence goes, but a title is never empty: "# #" has the title "#".
        title = raw[: max(1, len(raw.rstrip(" \t#")))]
        headings.append((match.start(), title.strip()))
    return headings


def _section_lookup(text: str) -> tuple[list[int], list[str]]:
    headings = markdown_headings(text)
    return [position for position, _ in headings], [title for _, title in headings]


def _last_at_most(sorted_values: np.ndarray, low: int, high: int) -> int | None:
    """The largest value in ``[low, high]``, or None."""
    index = int(np.searchsorted(sorted_values, high, side="right")) - 1
    if index >= 0 and sorted_values[index] >= low:
        return int(sorted_values[index])
    return None


def _plan_windows(
    n: int,
    budget: int,
    overlap: int,
    min_tokens: int,
    sentence_ends: np.ndarray,
    word_starts: np.ndarray,
    fit: Callable[[int, int], int],
) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` covering ``0..n``, each at most ``budget`` long.

    ``fit(start, end)`` returns the end to use instead (smaller when the window's text would re-tokenize
    over budget).
    """
    overlap = min(overlap, budget // 2)  # the model may cap the budget below the configured max_tokens
    half = max(1, (budget + 1) // 2)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        if n - start <= budget:
            if windows and n - start < min_tokens:
                # Start the last window early so it is not a tiny fragment; keep it past the previous start.
                low = max(n - budget, windows[-1][0] + 1)
                early = max(n - min_tokens, low)
                start = min(start, _last_at_most(word_starts, low, early) or early)
            end = n
        else:
            limit = start + budget
            end = _last_at_most(sentence_ends, start + half, limit)
            if end is None:
                end = _last_at_most(word_starts, start + half, limit) or limit
        end = fit(start, end)
        windows.append((start, end))
        if end == n:
            return windows
        next_start = max(end - overlap, start + 1)
        # Begin the next window on a word start inside the overlap, if there is one.
        snapped = int(np.searchsorted(word_starts, next_start, side="left"))
        if snapped < len(word_starts) and word_starts[snapped] < end:
            next_start = int(word_starts[snapped])
        start = next_start


def _shrink_to_budget(
    text: str, starts: np.ndarray, ends: np.ndarray, first: int, last: int, budget: int, tokenizer: Any
) -> int:
    """Shrink window ``[first, last)`` until its stripped text re-tokenizes within budget; returns the new end."""
    while last - first > 1:
        piece = text[int(starts[first]) : int(ends[last - 1])].strip()
        count = len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"])
        if count <= budget:
            break
        last = max(first + 1, last - (count - budget))
    return last


def chunk_document(
    document: Document, tokenizer: Any, config: ChunkingConfig, *, reserved_tokens: int = 0
) -> list[Chunk]:
    """Cut one document into chunks of at most :func:`window_budget` tokens with ``text == doc.text[start:end]``.

    ``reserved_tokens`` keeps room in each window for text added at encode time (an instruction prefix).
    """
    text = document.text
    if not text or not text.strip():
        raise InvalidInputError(f"document {document.id!r} has no text; drop it or give it some text to index")
    budget = window_budget(tokenizer, config, reserved_tokens=reserved_tokens)
    # mode "none" needs one token past the budget to tell whether the cut splits a word.
    encoding = _tokenize(document, tokenizer, budget + 1 if config.mode == "none" else None)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    if len(offsets) == 0:
        raise InvalidInputError(f"document {document.id!r} produced no tokens; check its text and the tokenizer")
    starts, ends = offsets[:, 0], np.maximum.accumulate(offsets[:, 1])
    n = len(offsets)

    word_starts = _word_starts(encoding, starts, ends, text)
    clean = np.zeros(n + 1, dtype=bool)  # cutting before token i keeps words whole
    clean[[0, n]] = True
    clean[word_starts] = True

    def fit(first: int, last: int) -> int:
        # A window's text re-tokenizes to the same tokens when it is cut between words and its tokens do
        # not carry the whitespace we strip. Otherwise (a cut inside an over-long word, where "##ing" may
        # become several tokens; byte-level BPE, whose "Ġword" loses its space) count again and shrink.
        if clean[first] and clean[last] and not (text[starts[first]].isspace() or text[ends[last - 1] - 1].isspace()):
            return last
        return _shrink_to_budget(text, starts, ends, first, last, budget, tokenizer)

    if config.mode == "none":
        windows = [(0, fit(0, min(n, budget)))]
    else:
        if config.snap_to_sentences:
            positions = np.fromiter((m.end() for m in _SENTENCE_END.finditer(text)), dtype=np.int64)
            # A boundary at character p becomes the number of tokens that start before p.
            sentence_ends = np.unique(np.searchsorted(starts, positions, side="left"))
        else:
            sentence_ends = np.empty(0, dtype=np.int64)
        windows = _plan_windows(n, budget, config.overlap, config.min_tokens, sentence_ends, word_starts, fit)

    heading_positions, heading_titles = _section_lookup(text)
    chunks = []
    for first, last in windows:
        start, end = int(starts[first]), int(ends[last - 1])
        piece = text[start:end]
        start += len(piece) - len(piece.lstrip())
        end -= len(piece) - len(piece.rstrip())
        if start >= end:
            continue  # only whitespace-like tokens; nothing to index
        heading = bisect_right(heading_positions, start) - 1
        chunks.append(
            Chunk(
                doc_id=document.id,
                ordinal=len(chunks),
                start=start,
                end=end,
                text=text[start:end],
                section=heading_titles[heading] if heading >= 0 else None,
            )
        )
    return chunks


def chunk_documents(
    documents: Iterable[Document],
    tokenizer: Any,
    config: ChunkingConfig,
    *,
    reserved_tokens: int = 0,
    progress: bool = False,
) -> list[Chunk]:
    """Chunk many documents in order; see :func:`chunk_document`."""
    chunks: list[Chunk] = []
    for document in tqdm(documents, desc="Chunking", unit="doc", disable=not progress):
        chunks.extend(chunk_document(document, tokenizer, config, reserved_tokens=reserved_tokens))
    return chunks
