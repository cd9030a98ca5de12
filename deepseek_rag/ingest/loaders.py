"""Turn files, folders, BEIR corpora and Python records into :class:`~deepseek_rag.documents.Document` objects.

Supported files: plain text and markup (``.txt``, ``.md``, ``.markdown``, ``.rst``), ``.pdf`` (text layer via
``pypdf``; no OCR) and BEIR-style ``.jsonl`` / ``.jsonl.gz`` corpora (one document per row). Files that cannot
be used (binary, empty, undecodable, too large, unknown type inside a folder) are logged at WARNING and listed
in :attr:`LoadReport.skipped` rather than aborting the whole load. Caller mistakes (a missing path, an
explicitly named file of an unknown type, duplicate ids) raise :class:`~deepseek_rag.errors.InvalidInputError`.

This module reads and decodes; it does not chunk (see :mod:`deepseek_rag.chunking`).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..documents import Document
from ..errors import InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
SUPPORTED_SUFFIXES = (*TEXT_SUFFIXES, ".pdf", *JSONL_SUFFIXES)
DEFAULT_MAX_BYTES = 200 * 1024 * 1024

# Bytes that never occur in text (everything below 0x20 except \t \n \v \f \r and ESC).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27))
_ASCII_BYTES = bytes(range(128))
_MAX_CONTROL_RATIO = 0.05
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


@dataclass
class LoadReport:
    """What a load produced: the documents, and each ``(path, reason)`` that was skipped."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str | Path, reason: str) -> None:
        logger.warning("skipping %s: %s", path, reason)
        self.skipped.append((str(path), reason))


def decode_bytes(data: bytes) -> str:
    """Decode file bytes as text: BOM-marked UTF-8/16/32, then UTF-8, then GB18030; never latin-1 guesses.

    UTF-8 cut off inside its last character loses that character; UTF-8 with under 1% damaged sequences
    keeps them as U+FFFD (logged) rather than turning into GB18030 mojibake.

    Raises :class:`InvalidInputError` for binary data (NUL bytes, many control characters) or bytes that are
    none of these encodings.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    f"bytes start with a {encoding} byte-order mark but are not valid {encoding} ({exc.reason} "
                    f"at byte {exc.start}); re-save the file as UTF-8"
                ) from None
    sample = data[: 1 << 20]
    if b"\x00" in sample:
        raise InvalidInputError("data contains NUL bytes, so it is binary, not text; convert it to text first")
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if sample and controls / len(sample) > _MAX_CONTROL_RATIO:
        raise InvalidInputError(
            f"data looks binary ({controls} control bytes in the first {len(sample)}); convert it to text first"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")  # a file cut off inside its last character
    # UTF-8 with a few damaged bytes would decode as GB18030 mojibake; keep it UTF-8 and mark the damage.
    replaced = data.decode("utf-8", errors="replace")
    damaged = replaced.count("\ufffd")
    non_ascii = len(data.translate(None, _ASCII_BYTES))
    if damaged * 100 <= non_ascii:
        logger.warning("replaced %d invalid byte sequence(s) in otherwise valid UTF-8 text with U+FFFD", damaged)
        return replaced
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        pass
    raise InvalidInputError("data is neither UTF-8 nor GB18030 (nor marked UTF-16/32); re-save it as UTF-8")


def _suffix(path: Path) -> str:
    return ".jsonl.gz" if path.name.lower().endswith(".jsonl.gz") else path.suffix.lower()


def _read_text_file(path: Path, doc_id: str, report: LoadReport) -> None:
    try:
        text = decode_bytes(path.read_bytes())
    except (OSError, InvalidInputError) as exc:
        report.skip(path, str(exc))
        return
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        report.skip(path, "file is empty or whitespace only")
        return
    metadata = {"source": str(path), "title": path.stem, "file_type": _suffix(path)}
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
    except (PdfReadError, OSError, ValueError, KeyError) as exc:
        report.skip(path, f"PDF could not be read ({type(exc).__name__}: {exc})")
        return
    offsets, position = [], 0
    for page_text in pages:
        offsets.append(position)
        position += len(page_text) + 2  # pages are joined with a blank line
    text = "\n\n".join(pages)
    if not text.strip():
        report.skip(path, "PDF has no extractable text (scanned images?); run OCR on it first")
        return
    metadata = {"source": str(path), "title": path.stem, "file_type": ".pdf"}
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
                    _add_row(line, f"{path}:{lineno}", documents, report)
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        report.skip(path, f"could not read the file as UTF-8 JSON lines ({exc}); no rows from it were kept")
        return
    for document in documents:
        document.metadata["source"] = str(path)
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
    if doc_id is None or not isinstance(text, str):
        report.skip(where, "row needs an '_id' (or 'id') and a string 'text'")
    elif not text.strip():
        report.skip(where, f"document '{doc_id}' has empty text")
    else:
        extra = row.get("metadata")
        metadata: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
        if row.get("title"):
            metadata["title"] = row["title"]
        documents.append(Document(id=str(doc_id), text=text, metadata=metadata))


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
                if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                    files.append((path, relative.as_posix()))
        elif root.is_file():
            if _suffix(root) not in SUPPORTED_SUFFIXES:
                raise InvalidInputError(f"cannot load {root}: {_unsupported(_suffix(root))}")
            files.append((root, root.name))
        else:
            raise InvalidInputError(f"source {str(source)!r} does not exist; pass an existing file or directory")
    return files


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
        if _suffix(path) not in SUPPORTED_SUFFIXES:
            report.skip(path, _unsupported(_suffix(path)))
            continue
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
