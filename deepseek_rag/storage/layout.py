"""The on-disk layout of an index directory, and the small file operations that keep it always readable.

An index directory (format 2)::

    manifest.json           the current version's manifest, for people and tools (readers use versions/)
    CURRENT                 {"format_version": 2, "version": 7}: the one pointer a publish switches
    versions/v000007.json   a version: encoder, settings, vector spec, segments and their deletion markers
    segments/g000004/       one immutable segment: chunks.sqlite, vectors.faiss, postings/*.npy,
                            vectors.refine (a two-level spec's re-ranking codes, memory-mapped),
                            deletes-v000007.npy (its deleted chunk ids as of version 7)
    trained/t000001.faiss   the trained, empty vector index new segments start from (IVF centroids),
                            and t000001.refine (its trained re-ranking codec) for a two-level spec
    writer.lock             the writer lock (see lock.py)

Everything a version names is written and fsynced before ``CURRENT`` is replaced by an atomic rename, so a
crash at any moment leaves the previous version current; files of a version that never became current are
removed by the next writer. Readers only ever read. A directory of the first release (format 1: a
``manifest.json`` of format 1 beside ``chunks.sqlite`` and ``vectors.faiss``) is still readable (``legacy.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import IndexFormatError, InvalidInputError

MANIFEST_NAME = "manifest.json"
CURRENT_NAME = "CURRENT"
VERSIONS_DIR = "versions"
SEGMENTS_DIR = "segments"
TRAINED_DIR = "trained"
LOCK_NAME = "writer.lock"
FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1
KNOWN_FORMATS = (LEGACY_FORMAT_VERSION, FORMAT_VERSION)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's data, or make a rename inside a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, fsync, and rename it into place (the rename made durable too)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_json_durably(path: Path, data: Any) -> int:
    """Write ``data`` as JSON to a new file at ``path`` and fsync it; returns its size in bytes."""
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return path.stat().st_size


def file_checksum(path: Path) -> str:
    """CRC32 and size of a file: cheap enough to check on every load, strong enough to spot a torn write."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return f"{crc:08x}-{size}"


def version_name(version: int) -> str:
    return f"v{version:06d}"


def version_path(folder: Path, version: int) -> Path:
    return folder / VERSIONS_DIR / f"{version_name(version)}.json"


def segment_path(folder: Path, name: str) -> Path:
    return folder / SEGMENTS_DIR / name


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file of the index; unreadable or malformed is an :class:`IndexFormatError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"{path} ({what}) is missing: the index directory is damaged; rebuild the index") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path} ({what}) is damaged ({exc}); rebuild the index") from exc
    except OSError as exc:
        raise IndexFormatError(f"{path} ({what}) cannot be read ({exc})") from exc


def detect_format(folder: Path) -> int | None:
    """2 for a versioned directory, 1 for a first-release one, None when ``folder`` holds no index yet.

    Raises :class:`IndexFormatError` for a path that is not a directory, or a format this library does not know.
    """
    if not folder.is_dir():
        raise IndexFormatError(f"index directory {str(folder)!r} does not exist; build one with `deepseek-rag index`")
    if (folder / CURRENT_NAME).exists():
        return FORMAT_VERSION
    manifest = folder / MANIFEST_NAME
    if not manifest.exists():
        return None
    data = read_json(manifest, "manifest")
    version = data.get("format_version") if isinstance(data, dict) else None
    if version == LEGACY_FORMAT_VERSION:
        return LEGACY_FORMAT_VERSION
    if version == FORMAT_VERSION:
        raise IndexFormatError(
            f"{folder} has a format-2 manifest but no {CURRENT_NAME}: its first save never finished; "
            "rebuild it (deepseek-rag index ... --overwrite)"
        )
    raise IndexFormatError(
        f"{manifest} has format_version {version!r}; this library reads {', '.join(map(str, KNOWN_FORMATS))}. "
        "Upgrade deepseek-rag or rebuild the index."
    )


def read_current(folder: Path) -> int:
    """The version number ``CURRENT`` points at."""
    data = read_json(folder / CURRENT_NAME, "version pointer")
    if not isinstance(data, dict) or data.get("format_version") not in (FORMAT_VERSION,):
        found = data.get("format_version") if isinstance(data, dict) else data
        raise IndexFormatError(
            f"{folder / CURRENT_NAME} has format {found!r}; this library reads {FORMAT_VERSION}. "
            "Upgrade deepseek-rag or rebuild the index."
        )
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise IndexFormatError(f"{folder / CURRENT_NAME} names version {version!r}; rebuild the index")
    return version


def write_current(folder: Path, version: int) -> None:
    """Switch the directory to ``version``: the single atomic step of a publish."""
    atomic_write_text(folder / CURRENT_NAME, json.dumps({"format_version": FORMAT_VERSION, "version": version}) + "\n")


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Refresh the human-readable ``manifest.json`` (informational: readers go through ``CURRENT``)."""
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def directory_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_save_target(target: Path, overwrite: bool) -> None:
    """Raise :class:`InvalidInputError` if a new index cannot be saved to ``target`` — before any work is done.

    ``target`` must be a directory that is empty, absent, or (with ``overwrite``) an index; and the nearest
    folder that exists must take a new file (a probe file is created and removed, since permission bits say
    nothing for root, and a read-only mount or a full disk only shows when something is written).
    """
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} exists and is not a directory; choose a directory for the index")
    if target.is_dir() and any(target.iterdir()):
        found = detect_format(target)
        if not overwrite:
            raise InvalidInputError(
                f"{target} exists and is not empty; choose another directory or pass overwrite=True (--overwrite)"
            )
        if found is None:
            raise InvalidInputError(f"{target} is not an index directory; refusing to overwrite it")
    base = target.absolute()
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise InvalidInputError(f"cannot create {target}: {base} is a file, not a directory; choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepseek-rag-write-probe-", dir=base)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the index to {target}: {exc.strerror or exc} in {base}; choose a directory you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)
