"""The on-disk layout of an index directory, and the file moves that keep it always loadable.

An index directory holds ``manifest.json`` (format version, library version, encoder fingerprint and
reference, index spec, chunking, counts), ``chunks.sqlite`` (the source of truth) and ``vectors.faiss``.

How a save stays atomic: the new vectors are written to ``vectors.faiss.new`` and fsynced; then the
SQLite transaction that holds the new chunks *and* the new file's checksum commits — that commit is the
switch; then the file is renamed into place. A reader that finds a checksum mismatch rolls the rename
forward when ``vectors.faiss.new`` matches, so a crash at any moment leaves the old state or the new one.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from ..errors import IndexFormatError

MANIFEST_NAME = "manifest.json"
STORE_NAME = "chunks.sqlite"
VECTORS_NAME = "vectors.faiss"
PENDING_SUFFIX = ".new"
MANIFEST_FORMAT_VERSION = 1


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's data, or make a rename inside a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def file_checksum(path: Path) -> str:
    """CRC32 and size of a file: cheap enough to check on every load, strong enough to spot a torn write."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return f"{crc:08x}-{size}"


def settle_vectors_file(folder: Path, expected_checksum: str | None) -> Path:
    """Return the vectors file that matches the committed store, finishing an interrupted save if needed."""
    current = folder / VECTORS_NAME
    pending = folder / (VECTORS_NAME + PENDING_SUFFIX)
    if expected_checksum is None:
        raise IndexFormatError(f"{folder} has no committed vectors: the first save never finished; rebuild the index")
    if current.is_file() and file_checksum(current) == expected_checksum:
        if pending.exists():
            pending.unlink()  # a save that never committed
        return current
    if pending.is_file() and file_checksum(pending) == expected_checksum:
        os.replace(pending, current)  # a save that committed but did not finish its rename
        fsync_path(folder)
        return current
    what = "is missing" if not current.exists() else "does not match chunks.sqlite (damaged or truncated)"
    raise IndexFormatError(f"{current} {what}; rebuild the index with `deepseek-rag index`")


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and check ``manifest.json``; a missing or unknown one is an :class:`IndexFormatError`."""
    if not folder.is_dir():
        raise IndexFormatError(f"index directory {str(folder)!r} does not exist; build one with `deepseek-rag index`")
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"{folder} is not an index directory: {MANIFEST_NAME} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path} is damaged ({exc}); rebuild the index") from exc
    version = manifest.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format_version {version!r}; this library reads {MANIFEST_FORMAT_VERSION}. "
            "Upgrade deepseek-rag or rebuild the index."
        )
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
