"""Text preparation: documents in, chunks with the texts each side of the index reads — no model run, no I/O.

For each document: its language is detected when the caller gave none (it picks the BM25 analyzer); it is cut
into token windows that fit the encoder together with their contextual header (document title — section
heading) and the document prefix; each chunk gets the text the encoder embeds (header + text) and, when the
index has a BM25 side, its analysed terms. Everything here is a pure function of the documents, the
tokenizer and the settings, so a Dask worker with its own encoder can run it; encoding is the next step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..documents import Chunk, Document
from ..errors import InvalidInputError
from ..sparse.analysis import stemmer_language
from .chunking import ChunkingConfig, chunk_document, markdown_headings
from .decoding import describe_surrogate, lone_surrogate
from .language import detect_language

MAX_HEADER_CHARS = 160  # a contextual header is a hint, not a second chunk


def chunk_header(title: str | None, section: str | None) -> str:
    """The context put in front of a chunk's text when it is embedded (never part of the returned text)."""
    parts = [p.strip() for p in (title, section) if p and p.strip()]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return " — ".join(parts)[:MAX_HEADER_CHARS]


def with_header(text: str, title: str | None, section: str | None, enabled: bool = True) -> str:
    """``text`` with its contextual header in front (when enabled and there is one)."""
    header = chunk_header(title, section) if enabled else ""
    return f"{header}\n{text}" if header else text


def with_language(document: Document, enabled: bool = True) -> Document:
    """``document`` with ``metadata["language"]`` detected when the caller set none (a copy; theirs is kept)."""
    if not enabled or document.metadata.get("language"):
        return document
    language = detect_language(document.text)
    return Document(document.id, document.text, {**document.metadata, "language": language}) if language else document


def check_batch(documents: Iterable[Any], *, text: bool = True) -> list[Document]:
    """The documents of one write, checked: Document objects with ids unique in the batch and (``text``) text
    UTF-8 can hold. A distributed build checks text per document on its workers instead (``text=False``), so one
    bad document is reported while the rest are indexed."""
    checked: list[Document] = []
    seen: set[str] = set()
    for doc in documents:
        if not isinstance(doc, Document):
            raise InvalidInputError(f"expected Document objects, got {type(doc).__name__}; see loaders.documents_from_records")
        if doc.id in seen:
            raise InvalidInputError(f"document id {doc.id!r} appears twice in this batch; ids must be unique")
        if text:
            _check_encodable(doc)
        seen.add(doc.id)
        checked.append(doc)
    return checked


def _check_encodable(doc: Document) -> None:
    """Refuse text UTF-8 cannot hold (lone surrogates): the tokenizer and SQLite would fail on it mid-build."""
    for part, value in (("id", doc.id), ("text", doc.text),
                        ("metadata", json.dumps(doc.metadata, ensure_ascii=False, default=str))):
        position = lone_surrogate(value)
        if position is not None:
            raise InvalidInputError(
                f"document {doc.id!r}: its {part} holds {describe_surrogate(value, position)}; "
                "decode the source as UTF-8 with errors='replace', or fix the text"
            )


def chunk_for_encoder(document: Document, encoder: Any, chunking: ChunkingConfig, contextual_headers: bool) -> list[Chunk]:
    """Cut one document into chunks that fit ``encoder`` together with their header and the document prefix."""
    tokenizer = encoder.tokenizer
    reserved = encoder.document_prefix_tokens
    if contextual_headers:
        # Room for the longest header any chunk of this document gets (title — section heading).
        longest = max((title for _, title in markdown_headings(document.text)), key=len, default=None)
        header = chunk_header(document.title, longest)
        if header:
            reserved += len(tokenizer(header, add_special_tokens=False)["input_ids"]) + 1
    # The encoder reads max_seq_length tokens (MiniLM: 256), often fewer than its tokenizer's
    # model_max_length (512): windows must fit what is read, header and special tokens included.
    limit = encoder.max_seq_length - tokenizer.num_special_tokens_to_add() - reserved
    if limit < 8:
        raise InvalidInputError(
            f"document {document.id!r}: its title and the document prefix leave {limit} tokens of the encoder's "
            f"{encoder.max_seq_length}; shorten the title or index with contextual_headers=False"
        )
    if chunking.max_tokens > limit:
        chunking = replace(
            chunking, max_tokens=limit, overlap=min(chunking.overlap, limit // 2), min_tokens=min(chunking.min_tokens, limit)
        )
    return chunk_document(document, tokenizer, chunking, reserved_tokens=reserved)


@dataclass
class PreparedBatch:
    """One write's documents, their chunks, the texts the encoder embeds and (with a BM25 side) their terms."""

    documents: list[Document]
    chunk_lists: list[list[Chunk]]
    embedding_texts: list[str]
    term_lists: list[list[str]] | None
    algorithms: list[str]

    @property
    def chunk_count(self) -> int:
        return sum(len(c) for c in self.chunk_lists)


def prepare_documents(documents: Sequence[Document], encoder: Any, settings: Any) -> PreparedBatch:
    """Chunk ``documents`` for ``encoder`` under ``settings`` (an ``IndexSettings``) and analyse them for BM25."""
    documents = [with_language(doc, settings.detect_language) for doc in check_batch(documents)]
    chunk_lists = [chunk_for_encoder(doc, encoder, settings.chunking, settings.contextual_headers) for doc in documents]
    texts = [with_header(c.text, doc.title, c.section, settings.contextual_headers)
             for doc, chunks in zip(documents, chunk_lists) for c in chunks]
    term_lists = None
    algorithms: dict[str, None] = {}
    sparse = settings.sparse
    if sparse.enabled:
        term_lists = []
        analyzers: dict[str, Any] = {}
        for doc, chunks in zip(documents, chunk_lists):
            language = doc.metadata.get("language")
            algorithm = stemmer_language(language)
            algorithms[algorithm] = None
            analyzer = analyzers.get(algorithm) or analyzers.setdefault(algorithm, sparse.analyzer(language))
            term_lists.extend(analyzer(with_header(c.text, doc.title, c.section, sparse.headers)) for c in chunks)
    return PreparedBatch(documents, chunk_lists, texts, term_lists, list(algorithms))
