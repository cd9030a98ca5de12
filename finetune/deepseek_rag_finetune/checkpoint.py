"""Checkpoints: the adapter folder plus everything needed to continue a run exactly where it stopped.

``OUT/checkpoints/step-N/`` holds a loadable adapter folder (``adapter/``), ``trainer_state.pt`` (trained
weights, optimizer, both schedulers, grad scaler, step, epoch, position in the epoch, early-stopping state,
RNG states) and ``config.json``. Only rank 0 writes; every rank reads on resume.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepseek_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
STATE_NAME = "trainer_state.pt"
STATE_VERSION = 1


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS_DIR / f"step-{step}"


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``trainer_state.pt`` beside the adapter, via a temporary name (a crash leaves the old one)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {**state, "version": STATE_VERSION, "rng": _rng_state()}
    tmp = folder / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE_NAME)


def prune(out: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent ``step-N`` checkpoints."""
    found = sorted(_checkpoints(Path(out) / CHECKPOINTS_DIR), key=lambda p: int(p.name.split("-")[1]))
    for old in found[:-keep] if keep > 0 else found:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.glob("step-*") if p.name.split("-")[1].isdigit() and (p / STATE_NAME).is_file()]


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``step-N`` folder, or a run / ``checkpoints`` folder (its latest step); a clear error when there is none."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"checkpoint {str(path)!r} does not exist; pass OUT/checkpoints/step-N or a run folder OUT")
    if (path / STATE_NAME).is_file():
        return path
    for folder in (path, path / CHECKPOINTS_DIR):
        found = _checkpoints(folder)
        if found:
            return max(found, key=lambda p: int(p.name.split("-")[1]))
    raise InvalidInputError(f"no checkpoint in {path}: expected {STATE_NAME} in it or step-N folders under it")


def load_state(path: str | Path) -> dict[str, Any]:
    folder = resolve_checkpoint(path)
    state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=False)
    if state.get("version") != STATE_VERSION:
        raise InvalidInputError(f"checkpoint {folder} has state version {state.get('version')!r}; this trainer reads {STATE_VERSION}")
    state["path"] = str(folder)
    return state


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(state: dict[str, Any]) -> None:
    rng = state.get("rng")
    if not rng:
        return
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
