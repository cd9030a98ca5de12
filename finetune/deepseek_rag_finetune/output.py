"""Write what a run produces: the adapter folder the core loads, and the training report.

Adapter folder layout (read by :class:`deepseek_rag.DualEncoder` via ``EncoderConfig.adapter``)::

    OUT/deepseek_rag_adapter.json   format_version 1, base model fingerprint, sides, projection, encoder settings
    OUT/shared/                      one PEFT adapter for both sides            (adapter_mode "shared")
    OUT/query/ + OUT/document/       one PEFT adapter per side                  (adapter_mode "asymmetric")
    OUT/query/ alone                 documents keep the base model's vectors    (adapter_mode "query")
    OUT/projection.safetensors       weight (out, in) and bias                  (when a projection was trained)

``deepseek_rag_adapter.json`` is written last, so a folder interrupted mid-write is never mistaken for an
adapter. Merging into a plain model folder is ``export.py``'s job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from deepseek_rag.encoding.model_folder import ADAPTER_CONFIG_NAME, ADAPTER_FORMAT_VERSION

from . import __version__
from .lora import SHARED_ADAPTER, SIDES, TrainableEncoder

logger = logging.getLogger(__name__)

PROJECTION_FILE = "projection.safetensors"
REPORT_NAME = "training_report.json"


def save_adapter_folder(module: TrainableEncoder, out: str | Path, *, base_fingerprint: str, base_model: str) -> Path:
    """Write ``module``'s adapters (+ projection) and ``deepseek_rag_adapter.json`` into ``out``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ADAPTER_CONFIG_NAME).unlink(missing_ok=True)
    for stale in ("shared", *SIDES):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / PROJECTION_FILE).unlink(missing_ok=True)

    if module.asymmetric:
        for side in SIDES:
            _save_peft_adapter(module, side, out / side)
        sides = {side: side for side in SIDES}
    elif module.query_only:
        _save_peft_adapter(module, "query", out / "query")
        sides = {"query": "query", "document": None}
    else:
        _save_peft_adapter(module, SHARED_ADAPTER, out / "shared")
        sides = {side: "shared" for side in SIDES}
    projection = None
    if module.projection is not None:
        state = {k: v.detach().float().cpu().contiguous() for k, v in module.projection.state_dict().items()}
        save_file(state, str(out / PROJECTION_FILE))
        projection = {"file": PROJECTION_FILE}

    encoder = module.encoder
    manifest = {
        "format_version": ADAPTER_FORMAT_VERSION,
        "base_model": base_model,
        "base_model_fingerprint": base_fingerprint,
        "sides": sides,
        "projection": projection,
        "encoder": {
            # The training length (often shorter, for speed) is not recorded: the index reads documents
            # at the base model's length, and a query-side adapter must open indexes built without it.
            "pooling": encoder.pooling,
            "query_prefix": encoder.query_prefix,
            "document_prefix": encoder.document_prefix,
        },
        "lora": {
            "r": module.config.lora_r,
            "alpha": module.config.lora_alpha,
            "target_modules": module.target_modules,
            "adapter_mode": module.config.adapter_mode,
        },
        "written_by": f"deepseek-rag-finetune {__version__}",
    }
    _write_json_atomic(out / ADAPTER_CONFIG_NAME, manifest)
    return out


def _save_peft_adapter(module: TrainableEncoder, adapter_name: str, target: Path) -> None:
    """PEFT puts a non-default adapter in a subfolder named after it; save to a scratch dir and move it in place."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        module.model.save_pretrained(scratch, selected_adapters=[adapter_name])
        found = [p.parent for p in Path(scratch).rglob("adapter_config.json")]
        if len(found) != 1:
            raise RuntimeError(f"PEFT wrote {len(found)} adapter folders for {adapter_name!r}; expected one")
        shutil.move(str(found[0]), str(target))


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def folder_bytes(folder: str | Path, *, suffixes: tuple[str, ...] | None = None) -> int:
    """Bytes of the files under ``folder`` (optionally only those ending in ``suffixes``)."""
    folder = Path(folder)
    return sum(
        p.stat().st_size for p in folder.rglob("*")
        if p.is_file() and (suffixes is None or p.name.endswith(suffixes)) and "checkpoints" not in p.parts
    )


def adapter_bytes(out: str | Path) -> int:
    """Bytes an adapter folder adds on disk: the side folders, the projection and the manifest."""
    out = Path(out)
    parts = [out / name for name in ("shared", *SIDES) if (out / name).is_dir()]
    total = sum(folder_bytes(p) for p in parts)
    for name in (PROJECTION_FILE, ADAPTER_CONFIG_NAME):
        if (out / name).is_file():
            total += (out / name).stat().st_size
    return total


def base_model_bytes(model_dir: str | Path) -> int | None:
    """Bytes of a local base model's weights (safetensors / bin); None for a hub id."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return None
    weights = [p for p in model_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin")]
    return sum(p.stat().st_size for p in weights) or None


def write_report(out: str | Path, report: dict[str, Any]) -> Path:
    path = Path(out) / REPORT_NAME
    _write_json_atomic(path, report)
    return path
