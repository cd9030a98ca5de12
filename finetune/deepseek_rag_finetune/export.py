"""Merge an adapter folder into a plain sentence-transformers model folder.

The result needs neither PEFT nor this package: ``DualEncoder(model=folder)`` (or
``SentenceTransformer(folder)``) loads it and gives the same vectors as the base model with the adapter.
Layout: transformer weights + tokenizer at the root, ``1_Pooling/``, ``2_Dense/`` (identity activation, only
when a projection was trained), ``3_Normalize``, ``modules.json``, ``sentence_bert_config.json`` and the
query / document prefixes as prompts in ``config_sentence_transformers.json``.

A shared adapter merges into one model. An asymmetric adapter holds two models; export one ``side``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from deepseek_rag.encoding.model_folder import ADAPTER_CONFIG_NAME
from deepseek_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)


def export_merged_model(adapter: str | Path, out: str | Path, *, model: str | None = None, side: str | None = None,
                        overwrite: bool = False) -> Path:
    """Write ``model`` (None = bundled MiniLM) with ``adapter`` merged in to ``out``; return ``out``."""
    from safetensors.torch import save_file

    from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig

    adapter, out = Path(adapter), Path(out)
    manifest_path = adapter / ADAPTER_CONFIG_NAME
    if not manifest_path.is_file():
        raise InvalidInputError(f"{adapter} is not an adapter folder ({ADAPTER_CONFIG_NAME} is missing)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InvalidInputError(f"{out} exists and is not empty; choose another folder or pass overwrite=True (--overwrite)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    sides = manifest.get("sides", {})
    shared = sides.get("query") and sides.get("query") == sides.get("document")
    if not shared and side is None:
        raise InvalidInputError(
            "this adapter has separate query and document adapters, which cannot merge into one model; "
            "export one side (--side query or --side document)"
        )
    if side is not None and side not in ("query", "document"):
        raise InvalidInputError(f"side={side!r} must be 'query' or 'document'")

    encoder = DualEncoder(EncoderConfig(model=model, adapter=str(adapter), dtype="float32", device="cpu"))
    # the backend keeps one merged model per adapted side; a shared adapter is merged into the base
    merged = encoder.backend.model_for(side or "query")
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)

    dim = int(merged.config.hidden_size)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": encoder.pooling == "cls",
        "pooling_mode_mean_tokens": encoder.pooling == "mean",
        "pooling_mode_max_tokens": encoder.pooling == "max",
        "pooling_mode_lasttoken": encoder.pooling == "lasttoken",
    }, indent=2))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if encoder.backend.projection is not None:
        layer = encoder.backend.projection
        (out / "2_Dense").mkdir(exist_ok=True)
        (out / "2_Dense" / "config.json").write_text(json.dumps({
            "in_features": layer.in_features, "out_features": layer.out_features, "bias": layer.bias is not None,
            "activation_function": "torch.nn.modules.linear.Identity",
        }, indent=2))
        state = {"linear.weight": layer.weight.detach().float().cpu().contiguous()}
        if layer.bias is not None:
            state["linear.bias"] = layer.bias.detach().float().cpu().contiguous()
        save_file(state, str(out / "2_Dense" / "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": "3_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": encoder.max_seq_length, "do_lower_case": False}))
    prompts = {"query": encoder.query_prefix, "document": encoder.document_prefix}
    (out / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {k: v for k, v in prompts.items() if v}, "default_prompt_name": None, "similarity_fn_name": "cosine",
    }, indent=2))
    logger.info("exported %s merged into %s", adapter, out)
    return out
