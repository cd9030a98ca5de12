"""Opening a version of an index directory as a :class:`Snapshot`, and publishing a snapshot as a new version.

Opening reads ``CURRENT``, that version's record and its segments (reusing segments a caller already has
open, so a reader moving to the next version opens only what is new). A writer that publishes concurrently
may retire the version between the two reads; the open then starts again from ``CURRENT``.

Publishing (under the writer lock) writes only what changed: the segments built in memory since the last
version (merged into one), deletion markers of older segments that gained deletions, the trained template
the first time there is one — then the record, then ``CURRENT``. Its cost is that of the change.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import IndexFormatError
from ..sparse.bm25 import SparseConfig
from ..vectors.faiss_store import FaissVectorStore
from .layout import (
    CURRENT_NAME,
    SEGMENTS_DIR,
    TRAINED_DIR,
    fsync_path,
    read_current,
    segment_path,
    version_name,
)
from .segment import Segment, read_deletes, write_deletes
from .snapshot import SegmentState, Snapshot
from .versions import new_record, publish, read_record

logger = logging.getLogger(__name__)

_OPEN_ATTEMPTS = 5


def open_current(
    folder: Path, dim_of: Any, sparse_of: Any, *, reuse: Mapping[str, Segment] | None = None
) -> tuple[dict[str, Any], Snapshot]:
    """(record, snapshot) of the current version. ``dim_of(record)`` / ``sparse_of(record)`` give the vector
    dimension and the BM25 config (None: no sparse side) the caller has checked the record against."""
    last_error: Exception | None = None
    for _ in range(_OPEN_ATTEMPTS):
        version = read_current(folder)
        record = read_record(folder, version)
        try:
            return record, open_record(folder, record, dim_of(record), sparse_of(record), reuse=reuse)
        except (IndexFormatError, FileNotFoundError) as exc:
            last_error = exc
            if read_current(folder) == version:  # not a race with a publish: the version itself is damaged
                raise
            logger.info("version %d was replaced while it was being opened; opening the current one", version)
    raise IndexFormatError(f"{folder} changed {_OPEN_ATTEMPTS} times while it was being opened ({last_error}); try again")


def open_record(
    folder: Path, record: dict[str, Any], dim: int, sparse: SparseConfig | None, *, reuse: Mapping[str, Segment] | None = None
) -> Snapshot:
    """The snapshot a version record describes."""
    reuse = reuse or {}
    dense = record_is_dense(record)
    states = []
    opened: list[Segment] = []
    milvus = None
    if (record["vectors"] or {}).get("backend") == "milvus":
        from .milvus_segments import MilvusTarget

        milvus = MilvusTarget.from_record(record["vectors"])
    try:
        for entry in record["segments"]:
            name = entry["name"]
            path = segment_path(folder, name)
            segment = reuse.get(name)
            if segment is None:
                _check_files(path, entry.get("files") or {})
                if milvus is not None:
                    from .milvus_segments import open_segment

                    segment = open_segment(path, name, sparse, milvus, dim)
                else:
                    segment = Segment.open(path, name, sparse, dense=dense)
                opened.append(segment)
            deleted = read_deletes(path, entry.get("deletes"))
            states.append(SegmentState(segment, deleted, int(entry.get("deleted_documents", 0)), entry.get("deletes")))
        vectors = record["vectors"]
        trained = vectors.get("trained")
        if milvus is not None:
            template = FaissVectorStore(dim, "Flat")  # unpublished segments; published ones are Milvus collections
        elif trained:
            template = FaissVectorStore.open(folder / TRAINED_DIR / trained, mmap=False).empty_like()
        else:
            template = FaissVectorStore(dim, vectors.get("spec") or "auto")
        params = vectors.get("params") or {}
        if params.get("nprobe") is not None:
            template.nprobe = params["nprobe"]
        if params.get("k_factor") is not None:
            template.k_factor = params["k_factor"]
        template.calibration = vectors.get("calibration")
    except BaseException:
        for segment in opened:
            segment.close()
        raise
    for state in states:
        if state.segment.vectors is not None and state.segment.vectors.dim != dim:
            raise IndexFormatError(
                f"{state.segment.path} holds {state.segment.vectors.dim}-d vectors but the encoder makes {dim}-d ones"
            )
    return Snapshot(
        states, dim=dim, template=template, sparse=sparse, version=int(record["version"]),
        next_chunk_id=int(record["next_chunk_id"]), next_segment=int(record.get("next_segment", 1)), trained_file=trained,
        dense=dense, milvus=milvus,
    )


def record_is_dense(record: Mapping[str, Any]) -> bool:
    """Whether a version has a vector side (``IndexSettings.dense`` is recorded as "off" for a lexical-only one)."""
    return (record.get("settings") or {}).get("dense", "on") != "off"


def _check_files(path: Path, files: Mapping[str, int]) -> None:
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise IndexFormatError(f"{file} is missing: the index directory is damaged; rebuild the index")
        if file.stat().st_size != size:
            raise IndexFormatError(
                f"{file} is {file.stat().st_size} bytes where version records {size} (damaged or truncated); "
                "rebuild the index with `deepseek-rag index`"
            )


def publish_snapshot(
    folder: Path, snapshot: Snapshot, *, encoder: dict[str, Any], settings: dict[str, Any], rewrite_all: bool = False,
    rewrite: Collection[str] = (),
) -> tuple[dict[str, Any], Snapshot, int]:
    """Publish ``snapshot`` as the next version of ``folder`` (the caller holds the writer lock).

    Segments built in memory, and the published ones named in ``rewrite`` (a merge), are written together
    as one new segment without their deleted chunks; ``rewrite_all`` does so with every segment (saving into
    another directory, upgrading a first-release one). Returns (record, the new snapshot, bytes written).
    """
    current = read_current(folder) if (folder / CURRENT_NAME).exists() else 0
    version = current + 1
    tag = version_name(version)
    written = 0
    next_segment = snapshot.next_segment
    states: list[SegmentState] = []
    new_segments: list[Segment] = []
    try:
        fresh = [s for s in snapshot.states if rewrite_all or s.segment.name in rewrite or s.segment.path is None
                 or s.segment.path.parent != folder / SEGMENTS_DIR]
        milvus = snapshot.milvus
        if milvus is not None:  # "auto" is resolved, and an index id given, on the first publish
            milvus = milvus.resolved(snapshot.vector_count())
        kept = [s for s in snapshot.states if s not in fresh]
        for state in kept:
            if state.live_chunks <= 0:
                continue  # nothing left alive: the segment leaves the version
            if len(state.deleted) and state.deletes_file is None:
                name, size = write_deletes(state.segment.path, tag, state.deleted)
                written += size
                state = replace(state, deletes_file=name)
            states.append(state)
        live_fresh = [s for s in fresh if s.live_chunks > 0]
        if live_fresh:
            name = f"g{next_segment:06d}"
            next_segment += 1
            target = segment_path(folder, name)
            if target.exists():  # left by a publish that crashed before CURRENT moved: never visible
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            index_keys = list(settings.get("filter_fields") or [])
            if milvus is not None:
                from .milvus_segments import write_segment

                segment = write_segment(target, name, [(s.segment, s.deleted) for s in live_fresh], milvus,
                                        snapshot.sparse_config, snapshot.dim, encoder["fingerprint"])
            elif len(live_fresh) == 1 and not len(live_fresh[0].deleted) and live_fresh[0].segment.path is None:
                segment = live_fresh[0].segment.write(target, snapshot.sparse_config, index_keys)
                segment.name = name
            else:
                segment = Segment.merge(name, [(s.segment, s.deleted) for s in live_fresh], snapshot.template,
                                        target, snapshot.sparse_config, index_keys)
            new_segments.append(segment)
            written += sum(segment.files().values())
            fsync_path(target.parent)
            states.append(SegmentState(segment))
        trained = snapshot.trained_file
        template = snapshot.template
        if (snapshot.dense and trained is None and template.is_trained
                and not FaissVectorStore(template.dim, template.spec).is_trained):
            trained = f"t{version:06d}.faiss"
            (folder / TRAINED_DIR).mkdir(exist_ok=True)
            template.save(folder / TRAINED_DIR / trained)
            written += (folder / TRAINED_DIR / trained).stat().st_size
        result = snapshot.derive(states, version=version, next_segment=next_segment, trained_file=trained, milvus=milvus)
        documents, chunks = result.counts()
        if milvus is not None:
            vectors = {**milvus.record(), "dim": template.dim}
        elif snapshot.dense:
            search = template.search_record()
            vectors = {"backend": "faiss", "spec": template.spec, "dim": template.dim, "trained": trained,
                       "params": {key: value for key, value in search.items() if key != "calibration"},
                       "calibration": search["calibration"]}
        else:
            vectors = {"backend": None}
        record = new_record(
            version, current or None, encoder=encoder, settings=settings, vectors=vectors,
            segments=[_segment_entry(s) for s in states], next_chunk_id=snapshot.next_chunk_id,
            next_segment=next_segment, counts={"documents": documents, "chunks": chunks, "vectors": result.vector_count()},
        )
        written += publish(folder, record)
        if milvus is not None and states:
            from .milvus_segments import point_alias

            largest = max(states, key=lambda s: s.live_chunks).segment
            point_alias(milvus, largest.vectors.collection)
    except BaseException:
        for segment in new_segments:
            segment.close()
        raise
    return record, result, written


def _segment_entry(state: SegmentState) -> dict[str, Any]:
    segment = state.segment
    entry = {
        "name": segment.name, "documents": segment.documents, "chunks": segment.chunks,
        "deleted_chunks": int(len(state.deleted)), "deleted_documents": state.deleted_documents,
        "deletes": state.deletes_file, "files": segment.files(),
    }
    collection = getattr(segment.vectors, "collection", None)
    if collection is not None:  # a Milvus segment: its collection; its postings are a cache (rebuilt if absent)
        from .milvus_segments import MILVUS_FILE

        entry["collection"] = collection
        entry["files"] = {k: v for k, v in entry["files"].items() if k == MILVUS_FILE}
    return entry
