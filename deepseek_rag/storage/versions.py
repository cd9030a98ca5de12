"""Version records: what each published version of an index holds, how one is published, how old ones go.

A version record (``versions/v000007.json``) is the manifest of that version: format and library version,
the encoder (config and fingerprint), the index settings, the vector backend and its spec, and the segments
with their deletion-marker files and counts. :func:`publish` writes it, fsyncs it, then switches ``CURRENT``
— the one atomic step. :func:`collect_garbage` (run by the writer, under the writer lock) keeps the newest
``keep`` versions and removes every file no kept version names: older versions, segments merged away,
superseded deletion markers, and what a crashed publish left behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import IndexFormatError
from .layout import (
    CURRENT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SEGMENTS_DIR,
    TRAINED_DIR,
    VERSIONS_DIR,
    fsync_path,
    read_json,
    version_name,
    version_path,
    write_current,
    write_json_durably,
    write_manifest,
)

logger = logging.getLogger(__name__)

_REQUIRED = {"encoder": dict, "settings": dict, "vectors": dict, "segments": list, "next_chunk_id": int}
LEGACY_FILES = ("chunks.sqlite", "chunks.sqlite-wal", "chunks.sqlite-shm", "vectors.faiss", "vectors.faiss.new",
                "sparse.npz", "sparse.npz.new")


def new_record(
    version: int, parent: int | None, *, encoder: dict[str, Any], settings: dict[str, Any], vectors: dict[str, Any],
    segments: list[dict[str, Any]], next_chunk_id: int, next_segment: int, counts: dict[str, int],
) -> dict[str, Any]:
    """A version record, ready for :func:`publish`."""
    return {
        "format_version": FORMAT_VERSION, "library": "deepseek-rag", "library_version": __version__,
        "version": version, "parent": parent, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "encoder": encoder, "settings": settings, "vectors": vectors, "segments": segments,
        "next_chunk_id": next_chunk_id, "next_segment": next_segment, "counts": counts,
    }


def check_record(data: Any, where: str) -> dict[str, Any]:
    """``data`` if it is a well-formed version record (or a first-release manifest's core), else an
    :class:`IndexFormatError` naming what is wrong."""
    if not isinstance(data, Mapping):
        raise IndexFormatError(f"{where} is damaged: expected a JSON object, got {type(data).__name__}; rebuild the index")
    for key, kind in _REQUIRED.items():
        if key not in data:
            raise IndexFormatError(f"{where} is damaged: {key!r} is missing; rebuild the index")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise IndexFormatError(
                f"{where} is damaged: {key!r} should be a {kind.__name__}, got {type(data[key]).__name__}; rebuild the index"
            )
    encoder = data["encoder"]
    if not isinstance(encoder.get("config"), dict) or not isinstance(encoder.get("fingerprint"), dict):
        raise IndexFormatError(f"{where} is damaged: 'encoder' needs a 'config' and a 'fingerprint'; rebuild the index")
    for segment in data["segments"]:
        if not isinstance(segment, dict) or not isinstance(segment.get("name"), str):
            raise IndexFormatError(f"{where} is damaged: a segment entry has no name; rebuild the index")
    return dict(data)


def read_record(folder: Path, version: int) -> dict[str, Any]:
    """The record of ``version`` in ``folder``, checked."""
    path = version_path(folder, version)
    record = check_record(read_json(path, f"version {version}"), str(path))
    if record.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format_version {record.get('format_version')!r}; this library reads {FORMAT_VERSION}. "
            "Upgrade deepseek-rag or rebuild the index."
        )
    return record


def publish(folder: Path, record: dict[str, Any]) -> int:
    """Write ``record`` and make it the current version; returns the bytes written (record + pointer)."""
    versions = folder / VERSIONS_DIR
    versions.mkdir(exist_ok=True)
    path = version_path(folder, record["version"])
    if path.exists():  # a publish of this number crashed before CURRENT moved: it never became visible
        path.unlink()
    written = write_json_durably(path, record)
    fsync_path(versions)
    write_current(folder, record["version"])
    write_manifest(folder, record)
    return written + (folder / CURRENT_NAME).stat().st_size + (folder / MANIFEST_NAME).stat().st_size


def collect_garbage(folder: Path, current: int, keep: int) -> list[str]:
    """Remove what no kept version names (call under the writer lock); returns the removed paths."""
    removed: list[str] = []
    versions_dir = folder / VERSIONS_DIR
    numbers = sorted(
        int(p.stem[1:]) for p in versions_dir.glob("v*.json") if p.stem[1:].isdigit()
    ) if versions_dir.is_dir() else []
    kept = [v for v in numbers if v <= current][-max(1, keep):]
    records = []
    for v in kept:
        try:
            records.append(read_record(folder, v))
        except IndexFormatError as exc:  # keep what we cannot read: never delete on a guess
            logger.warning("version %d is unreadable (%s); garbage collection skipped", v, exc)
            return removed
    leaving = []
    for v in numbers:
        if v not in kept:
            try:
                leaving.append(read_record(folder, v))
            except IndexFormatError:
                pass
            version_path(folder, v).unlink(missing_ok=True)
            removed.append(f"{VERSIONS_DIR}/{version_name(v)}.json")
    if any((r.get("vectors") or {}).get("backend") == "milvus" for r in records + leaving):
        from .milvus_segments import drop_unnamed_collections

        removed.extend(f"milvus:{name}" for name in drop_unnamed_collections(records + leaving, records))
    segments = {s["name"]: s for r in records for s in r["segments"]}
    deletes = {(s["name"], s.get("deletes")) for r in records for s in r["segments"] if s.get("deletes")}
    trained = {r["vectors"].get("trained") for r in records if r["vectors"].get("trained")}
    segments_dir = folder / SEGMENTS_DIR
    if segments_dir.is_dir():
        for path in segments_dir.iterdir():
            if path.name not in segments:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"{SEGMENTS_DIR}/{path.name}")
                continue
            for marker in path.glob("deletes-*"):
                if (path.name, marker.name) not in deletes:
                    marker.unlink(missing_ok=True)
                    removed.append(f"{SEGMENTS_DIR}/{path.name}/{marker.name}")
    trained_dir = folder / TRAINED_DIR
    if trained_dir.is_dir():
        kept_stems = {Path(name).stem for name in trained}  # t000001.faiss and its t000001.refine
        for path in trained_dir.iterdir():
            if path.name not in trained and not (path.suffix == ".refine" and path.stem in kept_stems):
                path.unlink(missing_ok=True)
                removed.append(f"{TRAINED_DIR}/{path.name}")
    for name in LEGACY_FILES:  # a first-release directory that has been upgraded
        if (folder / name).exists():
            (folder / name).unlink()
            removed.append(name)
    for path in folder.glob("*.tmp-*"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    if removed:
        fsync_path(folder)
        logger.info("removed %d files no kept version uses: %s", len(removed), ", ".join(removed[:5]))
    return removed
