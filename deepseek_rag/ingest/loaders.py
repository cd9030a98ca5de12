"""Turn files, folders, BEIR corpora and Python records into :class:`~deepseek_rag.documents.Document` objects.

Supported files: plain text and markup (``.txt``, ``.md``, ``.markdown``, ``.rst``), ``.pdf`` (text layer via
``pypdf``; no OCR) and BEIR-style ``.jsonl`` / ``.jsonl.gz`` corpora (one document per row). Files that cannot
be used (binary, empty, undecodable, too large, damaged, unknown type inside a folder, not a regular file) and
JSONL rows that are not usable documents are logged at WARNING and listed in :attr:`LoadReport.skipped` rather
than aborting the whole load. Text files that are not UTF-8 are decoded as ``ingest/decoding.py`` decides
(GB18030, or a legacy encoding such as Windows-1252 detected by charset-normalizer) and the encoding chosen is
listed in :attr:`LoadReport.encodings`. Caller mistakes (a missing path, an explicitly named file of an unknown
type or one that is not a regular file, duplicate ids) raise :class:`~deepseek_rag.errors.InvalidInputError`.

This module reads and decodes; it does not chunk (see :mod:`deepseek_rag.ingest.chunking`).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..documents import Document
from ..errors import InvalidInputError, MissingDependencyError
from .decoding import decode_bytes, decode_text, describe_surrogate, lone_surrogate

__all__ = [
    "LoadReport", "decode_bytes", "documents_from_records", "load_beir_corpus", "load_documents",
    "load_documents_with_report",
]

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, ".pdf", *JSONL_SUFFIXES)
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)  # gzip raises all of the first three


@dataclass
class LoadReport:
    """What a load produced: the documents, each ``(path, reason)`` that was skipped, and the encoding of each
    text file that was not UTF-8 (``{path: "cp1252"}``)."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)

    def skip(self, path: str | Path, reason: str) -> None:
        # ``skipped`` marks the record for a caller that prints the report itself (the CLI) and drops the log line.
        logger.warning("skipping %s: %s", _printable(path), reason, extra={"skipped": True})
        self.skipped.append((_printable(path), reason))


def _printable(path: str | Path) -> str:
    """``path`` as text that UTF-8 can hold: bytes of a non-UTF-8 file name are kept as ``\\xe9`` escapes.

    Such names (from old archives, or Latin-1 systems) would otherwise become document ids that no tokenizer or
    SQLite accepts.
    """
    text = str(path)
    if lone_surrogate(text) is None:
        return text
    return os.fsencode(text).decode("utf-8", errors="backslashreplace")


def _suffix(path: Path) -> str:
    return ".jsonl.gz" if path.name.lower().endswith(".jsonl.gz") else path.suffix.lower()


def _read_text_file(path: Path, doc_id: str, report: LoadReport) -> None:
    try:
        text, encoding = decode_text(path.read_bytes())
    except (OSError, InvalidInputError) as exc:
        report.skip(path, str(exc))
        return
    if encoding != "utf-8":
        logger.info("read %s as %s (not UTF-8)", _printable(path), encoding)
        report.encodings[_printable(path)] = encoding
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        report.skip(path, "file is empty or whitespace only")
        return
    metadata = {"source": _printable(path), "title": _printable(path.stem), "file_type": _suffix(path)}
    report.documents.append(Document(id=doc_id, text=text, metadata=metadata))


def _read_pdf(path: Path, doc_id: str, report: LoadReport) -> None:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise MissingDependencyError(f"reading {path} needs pypdf; install it with `pip install pypdf`") from None
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            report.skip(path, "PDF is password-protected; decrypt it first")
            return
        pages = [(page.extract_text() or "").replace("\r\n", "\n") for page in reader.pages]
    except (PdfReadError, OSError) as exc:
        report.skip(path, f"PDF could not be read ({type(exc).__name__}: {exc})")
        return
    except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on content it cannot handle
        # NotImplementedError (a stream filter it lacks), DependencyError (JBIG2 without jbig2dec, Brotli),
        # KeyError/ValueError/TypeError on damaged objects: the file is unusable, the rest of the load is not.
        logger.debug("pypdf failed on %s", _printable(path), exc_info=True)
        report.skip(path, f"PDF content could not be extracted ({type(exc).__name__}: {exc}); "
                          "convert it to text (or re-save it as a standard PDF) and index that")
        return
    offsets, position = [], 0
    for page_text in pages:
        offsets.append(position)
        position += len(page_text) + 2  # pages are joined with a blank line
    text = "\n\n".join(pages)
    if not text.strip():
        report.skip(path, "PDF has no extractable text (scanned images?); run OCR on it first")
        return
    surrogate = lone_surrogate(text)
    if surrogate is not None:  # pypdf can map glyphs to surrogate code points
        report.skip(path, f"PDF text holds {describe_surrogate(text, surrogate)}; convert it to text and index that")
        return
    metadata = {"source": _printable(path), "title": _printable(path.stem), "file_type": ".pdf"}
    metadata.update(pages=len(pages), page_offsets=offsets)
    report.documents.append(Document(id=doc_id, text=text, metadata=metadata))


def _read_jsonl(path: Path, report: LoadReport) -> None:
    """One document per BEIR row ``{"_id"|"id", "title"?, "text", "metadata"?}``; bad rows are skipped."""
    documents: list[Document] = []
    opener = gzip.open if _suffix(path) == ".jsonl.gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            for lineno, line in enumerate(handle, start=1):
                if line.strip():
                    _add_row(line, f"{_printable(path)}:{lineno}", documents, report)
    except _READ_ERRORS as exc:
        kind = "damaged gzip data" if isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)) else type(exc).__name__
        report.skip(path, f"could not read the file as UTF-8 JSON lines ({kind}: {exc}); no rows from it were kept")
        return
    for document in documents:
        document.metadata["source"] = _printable(path)
    report.documents.extend(documents)


def _add_row(line: str, where: str, documents: list[Document], report: LoadReport) -> None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict):
        report.skip(where, "row is not a JSON object")
        return
    doc_id, text = row.get("_id", row.get("id")), row.get("text")
    bad = _field_with_surrogate(row)
    if doc_id is None or not isinstance(text, str):
        report.skip(where, "row needs an '_id' (or 'id') and a string 'text'")
    elif bad is not None:
        report.skip(where, f"row {bad}; fix the exporter that wrote it (a JSON \\ud83d escape needs its pair)")
    elif not text.strip():
        report.skip(where, f"document '{doc_id}' has empty text")
    else:
        extra = row.get("metadata")
        metadata: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
        if row.get("title"):
            metadata["title"] = row["title"]
        documents.append(Document(id=str(doc_id), text=text, metadata=metadata))


def _field_with_surrogate(row: dict[str, Any]) -> str | None:
    """Which field of a row holds a lone surrogate, and where, or None."""
    for key, value in row.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        position = lone_surrogate(f"{key}{text}")
        if position is not None:
            where = f"key {_printable(key)!r}" if position < len(key) else f"field {key!r}"
            return f"{where} holds {describe_surrogate(f'{key}{text}', position)}"
    return None


def _load_file(path: Path, doc_id: str, report: LoadReport, max_bytes: int) -> None:
    suffix = _suffix(path)
    if suffix in JSONL_SUFFIXES:  # streamed, so corpora larger than max_bytes still load
        _read_jsonl(path, report)
        return
    size = path.stat().st_size
    if size > max_bytes:
        report.skip(path, f"file is {size} bytes, over max_bytes={max_bytes}; split it or raise max_bytes")
    elif suffix == ".pdf":
        _read_pdf(path, doc_id, report)
    else:
        _read_text_file(path, doc_id, report)


def _unsupported(suffix: str) -> str:
    return f"unsupported file type '{suffix or '(none)'}'; supported: {', '.join(SUPPORTED_SUFFIXES)}"


def _collect_files(sources: Iterable[str | Path] | str | Path, recursive: bool) -> list[tuple[Path, str]]:
    """``(path, document id)`` for every file; unknown types inside folders get checked later."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[tuple[Path, str]] = []
    for source in sources:
        root = Path(source)
        if root.is_dir():
            candidates = root.rglob("*") if recursive else root.iterdir()
            for path in sorted(candidates):
                relative = path.relative_to(root)
                # Hidden files and folders (.git, .DS_Store) are never documents.
                if any(part.startswith(".") for part in relative.parts) or path.is_dir():
                    continue
                # A FIFO, socket or device is never opened (reading a FIFO blocks): it goes to the report.
                files.append((path, _printable(relative.as_posix())))
        elif root.is_file():
            if _suffix(root) not in SUPPORTED_SUFFIXES:
                raise InvalidInputError(f"cannot load {_printable(root)}: {_unsupported(_suffix(root))}")
            files.append((root, _printable(root.name)))
        elif root.exists():
            raise InvalidInputError(
                f"source {_printable(source)!r} is {_file_kind(root)}, not a regular file or directory; "
                "copy its contents into a file and pass that"
            )
        else:
            raise InvalidInputError(f"source {_printable(source)!r} does not exist; pass an existing file or directory")
    return files


def _file_kind(path: Path) -> str:
    """``"a FIFO (named pipe)"``, ``"a socket"``, ... for a path that exists but is no regular file or directory."""
    if path.is_fifo():
        return "a FIFO (named pipe)"
    if path.is_socket():
        return "a socket"
    if path.is_block_device() or path.is_char_device():
        return "a device"
    return "a special file"


def load_documents_with_report(
    sources: Iterable[str | Path] | str | Path,
    *,
    recursive: bool = True,
    progress: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadReport:
    """Load files and directories into documents, reporting every file or row that was skipped and why.

    Plain files get ``id`` = path relative to the directory given (the file name for a file given directly)
    and ``metadata`` with ``source``, ``title`` (file stem) and ``file_type``; PDFs add ``pages`` and
    ``page_offsets`` (character offset of each page in the text). JSONL rows keep their own ids and titles.
    """
    if max_bytes <= 0:
        raise InvalidInputError(f"max_bytes must be positive, got {max_bytes}")
    report = LoadReport()
    for path, doc_id in tqdm(_collect_files(sources, recursive), desc="Loading", unit="file", disable=not progress):
        if not path.is_file():
            exists = path.exists() or path.is_symlink()
            report.skip(path, f"{_file_kind(path)}, not a regular file" if path.exists() else
                        "a broken symbolic link" if exists else "the file disappeared while loading")
        elif _suffix(path) not in SUPPORTED_SUFFIXES:
            report.skip(path, _unsupported(_suffix(path)))
        else:
            _load_file(path, doc_id, report, max_bytes)
    _check_unique_ids(report.documents)
    return report


def load_documents(
    sources: Iterable[str | Path] | str | Path,
    *,
    recursive: bool = True,
    progress: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Document]:
    """Like :func:`load_documents_with_report` but returns only the documents (skips are still logged)."""
    return load_documents_with_report(
        sources, recursive=recursive, progress=progress, max_bytes=max_bytes
    ).documents


def load_beir_corpus(path: str | Path) -> list[Document]:
    """Load a BEIR corpus from its folder (holding ``corpus.jsonl[.gz]``) or from the corpus file itself."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "corpus.jsonl", path / "corpus.jsonl.gz"]
        found = [candidate for candidate in candidates if candidate.is_file()]
        if not found:
            raise InvalidInputError(f"BEIR folder {path} has no corpus.jsonl or corpus.jsonl.gz")
        path = found[0]
    elif not path.is_file():
        raise InvalidInputError(f"BEIR corpus {str(path)!r} does not exist; pass a BEIR folder or corpus.jsonl")
    elif _suffix(path) not in JSONL_SUFFIXES:
        raise InvalidInputError(f"BEIR corpus {path} must be .jsonl or .jsonl.gz, got '{_suffix(path)}'")
    report = LoadReport()
    _read_jsonl(path, report)
    if report.skipped and report.skipped[-1][0] == _printable(path):  # the file itself, not one of its rows
        raise InvalidInputError(f"BEIR corpus {_printable(path)}: {report.skipped[-1][1]}")
    _check_unique_ids(report.documents)
    return report.documents


def documents_from_records(
    records: Iterable[dict[str, Any] | str | Document], *, id_key: str = "id", text_key: str = "text"
) -> list[Document]:
    """Build documents from Python objects: strings (ids "0", "1"... by position), dicts, or documents.

    A dict's ``metadata`` dict and any keys other than ``id_key``/``text_key`` become the metadata.
    """
    documents = []
    for position, record in enumerate(records):
        if isinstance(record, Document):
            document = record
        elif isinstance(record, str):
            document = Document(id=str(position), text=record)
        elif isinstance(record, dict):
            if id_key not in record or not isinstance(record.get(text_key), str):
                raise InvalidInputError(
                    f"record {position} needs an {id_key!r} and a string {text_key!r}, got keys "
                    f"{list(record)}; pass id_key=/text_key= to name yours"
                )
            extra = record.get("metadata")
            metadata = dict(extra) if isinstance(extra, dict) else {}
            metadata.update({k: v for k, v in record.items() if k not in (id_key, text_key, "metadata")})
            document = Document(id=str(record[id_key]), text=record[text_key], metadata=metadata)
        else:
            raise TypeError(f"record {position} is a {type(record).__name__}; pass str, dict or Document")
        if not document.text.strip():
            raise InvalidInputError(f"document {document.id!r} has no text; drop it or give it some text")
        documents.append(document)
    _check_unique_ids(documents)
    return documents


def _check_unique_ids(documents: list[Document]) -> None:
    seen: dict[str, Document] = {}
    for document in documents:
        if document.id in seen:
            first = seen[document.id].metadata.get("source", "an earlier record")
            again = document.metadata.get("source", "a later record")
            raise InvalidInputError(
                f"duplicate document id {document.id!r} (from {first} and {again}); ids must be unique: "
                "load the common parent directory, rename a file, or fix the ids"
            )
        seen[document.id] = document
