"""The records data flows through: a source :class:`Document`, the :class:`Chunk` cut from it, and the
:class:`Hit` / :class:`DocumentHit` a search returns.

Nothing here touches a model, a file or an index; loaders make documents, chunking makes chunks, retrieval
makes hits. A :class:`Document` checks its field types when it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError


@dataclass
class Document:
    """One source text with a caller-chosen id and free-form JSON-serialisable metadata.

    ``metadata["title"]``, when present, is used as the document title (BEIR corpora, file names).
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A caller's None or bytes would otherwise fail far away (a tokenizer's TypeError mid-build).
        if not isinstance(self.id, str):
            raise InvalidInputError(f"Document id must be a str, got {type(self.id).__name__} {self.id!r}; pass str(id)")
        if isinstance(self.text, (bytes, bytearray)):
            raise InvalidInputError(
                f"Document {self.id!r}: text is bytes; decode it first (text=data.decode('utf-8'), or "
                "deepseek_rag.ingest.decoding.decode_bytes(data), which also reads GB18030 and legacy encodings)"
            )
        if not isinstance(self.text, str):
            raise InvalidInputError(f"Document {self.id!r}: text must be a str, got {type(self.text).__name__}")
        if not isinstance(self.metadata, dict):
            if not isinstance(self.metadata, Mapping):
                raise InvalidInputError(
                    f"Document {self.id!r}: metadata must be a dict, got {type(self.metadata).__name__}"
                )
            self.metadata = dict(self.metadata)

    @property
    def title(self) -> str | None:
        title = self.metadata.get("title")
        return str(title) if title else None


@dataclass
class Chunk:
    """A contiguous span ``text == document.text[start:end]`` of one document.

    ``id`` is the int64 assigned by the store (and used as the FAISS id); it is ``None`` until stored.
    ``ordinal`` is the chunk's position within its document (0, 1, 2...); ``section`` the nearest
    Markdown heading above the chunk, if any.
    """

    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    section: str | None = None
    id: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One retrieved chunk: ``text == document.text[start:end]``; ``score`` is higher-is-better."""

    chunk_id: int
    doc_id: str
    score: float
    start: int
    end: int
    text: str
    ordinal: int
    section: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class DocumentHit:
    """One retrieved document, scored from its chunks; ``hits`` are its best chunks, best first."""

    doc_id: str
    score: float
    hits: list[Hit]
    metadata: dict[str, Any] = field(default_factory=dict)
