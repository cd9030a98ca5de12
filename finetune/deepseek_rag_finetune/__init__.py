"""deepseek-rag-finetune: LoRA fine-tuning for deepseek-rag's dual encoder.

Pairs in (JSONL / CSV / BEIR qrels, span-labelled long documents, or pseudo-pairs from a bare corpus), hard negatives mined with the
current encoder or BM25, InfoNCE or margin loss, one process or ``torchrun``; out comes an adapter folder
that ``deepseek_rag.DualEncoder(adapter=...)`` loads, or a merged model folder (``export.py``). Nothing heavy
is imported until a name below is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrainingPair": "pairs",
    "load_pairs": "pairs",
    "read_beir_pairs": "pairs",
    "deduplicate": "pairs",
    "split_dev": "pairs",
    "write_jsonl_pairs": "pairs",
    "pseudo_pairs": "cold_start",
    "llm_pairs": "cold_start",
    "mine_hard_negatives": "mining",
    "rank_passages": "mining",
    "SpanLabels": "spans",
    "read_span_labels": "spans",
    "span_pairs": "spans",
    "InfoNCELoss": "losses",
    "ContrastiveMarginLoss": "losses",
    "FinetuneConfig": "config",
    "Trainer": "trainer",
    "TrainingResult": "trainer",
    "finetune": "trainer",
    "detect_target_modules": "lora",
    "export_merged_model": "export",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .cold_start import llm_pairs, pseudo_pairs
    from .config import FinetuneConfig
    from .export import export_merged_model
    from .lora import detect_target_modules
    from .losses import ContrastiveMarginLoss, InfoNCELoss
    from .mining import mine_hard_negatives, rank_passages
    from .pairs import TrainingPair, deduplicate, load_pairs, read_beir_pairs, split_dev, write_jsonl_pairs
    from .spans import SpanLabels, read_span_labels, span_pairs
    from .trainer import Trainer, TrainingResult, finetune


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deepseek_rag_finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
