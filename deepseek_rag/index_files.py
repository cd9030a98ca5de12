"""Opening an index directory: its format, the encoder and settings its record names, and the current snapshot.

Used by :class:`~deepseek_rag.DocumentIndex` (``load``, ``refresh``) and :class:`~deepseek_rag.IndexHandle`.
Nothing here writes to the directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .encoding.dual_encoder import DualEncoder, EncoderConfig
from .encoding.export_folder import is_export_folder
from .encoding.fingerprint import check_fingerprint
from .errors import IndexFormatError, InvalidInputError
from .settings import IndexSettings
from .sparse.bm25 import SparseConfig
from .storage.directory import open_current
from .storage.layout import CURRENT_NAME, LEGACY_FORMAT_VERSION, SEGMENTS_DIR, detect_format
from .storage.legacy import open_legacy_segment, read_legacy_manifest
from .storage.segment import Segment
from .storage.snapshot import SegmentState, Snapshot


def open_index(
    folder: Path, encoder: DualEncoder | None, overrides: Mapping[str, Any] | None, *,
    reuse: Mapping[str, Segment] | None = None,
) -> tuple[DualEncoder, IndexSettings, Snapshot]:
    """(encoder, settings, snapshot) of the current version of ``folder``; never writes to it."""
    found = detect_format(folder)
    if found is None:
        raise IndexFormatError(f"{folder} is not an index directory: it has no {CURRENT_NAME} or manifest.json")
    if found == LEGACY_FORMAT_VERSION:
        record = read_legacy_manifest(folder)
        encoder, settings = encoder_and_settings(record, folder, encoder, overrides)
        sparse = settings.sparse if settings.sparse.enabled else None
        segment = open_legacy_segment(folder, sparse)
        last = int(segment.chunk_ids[-1]) if len(segment.chunk_ids) else 0
        snapshot = Snapshot([SegmentState(segment)], dim=encoder.dim, template=segment.vectors.empty_like(),
                            sparse=sparse, next_chunk_id=last + 1)
        return encoder, settings, snapshot
    opened: dict[str, Any] = {}

    def dim_of(record: dict[str, Any]) -> int:
        if "encoder" not in opened or opened["record"] is not record:
            opened["encoder"], opened["settings"] = encoder_and_settings(
                record, folder, opened.get("encoder", encoder), overrides
            )
            opened["record"] = record
        return opened["encoder"].dim

    def sparse_of(record: dict[str, Any]) -> SparseConfig | None:
        settings = opened["settings"]
        if settings.sparse.enabled:
            settings.sparse.load_query_model()  # a missing or changed query model fails the open, not each search
        return settings.sparse if settings.sparse.enabled else None

    _, snapshot = open_current(folder, dim_of, sparse_of, reuse=reuse)
    return opened["encoder"], opened["settings"], snapshot


def next_segment_number(folder: Path) -> int:
    """The first segment number free in ``folder`` (numbers are never reused within a directory)."""
    taken = [int(p.name[1:]) for p in (folder / SEGMENTS_DIR).glob("g*") if p.name[1:].isdigit()]
    return max(taken, default=0) + 1


def encoder_and_settings(
    record: dict[str, Any], folder: Path, encoder: DualEncoder | None, overrides: Mapping[str, Any] | None
) -> tuple[DualEncoder, IndexSettings]:
    from . import __version__

    if encoder is None:
        try:
            config = EncoderConfig.from_dict(recorded_config_with(record["encoder"]["config"], overrides or {}))
        except InvalidInputError as exc:
            raise IndexFormatError(f"{folder}: its encoder config cannot be read ({exc})") from exc
        encoder = DualEncoder(config)
    check_fingerprint(record["encoder"]["fingerprint"], encoder.fingerprint(), str(folder),
                      allow_precision_mismatch=encoder.config.allow_precision_mismatch)
    try:
        settings = IndexSettings.from_dict(record["settings"])
    except InvalidInputError as exc:
        raise IndexFormatError(
            f"{folder} was written by a newer deepseek-rag or is damaged ({exc}); this is {__version__}: "
            "upgrade deepseek-rag to open it"
        ) from exc
    return encoder, settings


def recorded_config_with(recorded: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The index's encoder config with ``overrides`` on top. Another ``model`` brings its own runtime (the recorded
    ``backend`` named the recorded model's), and an exported one its adapters, merged into its graphs."""
    config = {**recorded, **overrides}
    if "model" in overrides and overrides["model"] != recorded.get("model"):
        if "backend" not in overrides:
            config["backend"] = "auto"
        if "adapter" not in overrides and overrides["model"] and is_export_folder(overrides["model"]):
            config["adapter"] = None
    return config


def portable_encoder_config(encoder: DualEncoder) -> dict[str, Any]:
    """The encoder config to record: the bundled model stays ``None`` so the index opens on any machine."""
    config = encoder.config.to_dict()
    for key in ("device", "dtype", "batch_size", "threads", "allow_precision_mismatch"):
        config.pop(key, None)  # how to run, not what the vectors mean
    if config.get("model"):
        model = Path(config["model"])
        config["model"] = str(model.resolve()) if model.exists() else config["model"]
    if config.get("adapter"):
        config["adapter"] = str(Path(config["adapter"]).resolve())
    return config
