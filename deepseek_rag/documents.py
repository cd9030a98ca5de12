"""The records data flows through: a source :class:`Document`, the :class:`Chunk` cut from it, and the
:class:`Hit` / :class:`DocumentHit` a search returns.

Nothing here touches a model, a file or an index; loaders make documents, chunking makes chunks, retrieval
makes hits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One source text with a caller-chosen id and free-form JSON-serialisable metadata.

    ``metadata["title"]``, when present, is used as the document title (BEIR corpora, file names).
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

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
