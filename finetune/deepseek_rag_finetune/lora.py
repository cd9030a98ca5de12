"""LoRA on a DualEncoder's base transformer: which layers to adapt, and the trainable two-sided module.

:func:`detect_target_modules` finds the attention / feed-forward linear layers by name for the common
encoder families; :class:`TrainableEncoder` wraps a :class:`deepseek_rag.DualEncoder` whose base model is
turned into a PEFT model with one shared adapter or two named ones ("query", "document"), plus an optional
linear projection, as one ``nn.Module`` whose ``forward`` embeds a batch of queries and a batch of
documents (one forward per step, as DistributedDataParallel wants). Saving lives in ``output.py``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from .config import FinetuneConfig

logger = logging.getLogger(__name__)

SHARED_ADAPTER = "default"  # PEFT's name; saved into OUT/shared
SIDES = ("query", "document")

# Families by the names of their linear layers (last name component), most specific first.
_FAMILIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("bert / roberta / xlm-r / minilm", ("query", "key", "value"), ("query", "key", "value", "dense")),
    ("mpnet / t5 (e5-style)", ("q", "k", "v", "o"), ("q", "k", "v", "o")),
    ("llama / qwen / mistral", ("q_proj", "k_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj", "out_proj")),
    ("nomic / mosaic bert", ("Wqkv",), ("Wqkv", "Wo", "out_proj")),
    ("distilbert", ("q_lin", "k_lin", "v_lin"), ("q_lin", "k_lin", "v_lin", "out_lin")),
    ("deberta", ("query_proj", "key_proj", "value_proj"), ("query_proj", "key_proj", "value_proj", "dense")),
)
# Heads that sit beside last_hidden_state and never get a gradient from an embedding loss.
_EXCLUDED_PARTS = ("pooler", "classifier", "lm_head")


def linear_layer_names(model: nn.Module) -> set[str]:
    """Last name components of every ``nn.Linear`` in ``model`` (outside pooler / heads)."""
    return {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(part in name for part in _EXCLUDED_PARTS)
    }


def detect_target_modules(model: nn.Module) -> list[str]:
    """The linear layers LoRA should adapt, found by scanning module names; raise when the family is unknown."""
    names = linear_layer_names(model)
    for family, signature, targets in _FAMILIES:
        if set(signature) <= names:
            found = [t for t in targets if t in names]
            logger.info("LoRA targets for a %s model: %s", family, ", ".join(found))
            return found
    raise ValueError(
        f"cannot tell which layers to adapt in a {type(model).__name__} (linear layers: {', '.join(sorted(names))}); "
        "pass target_modules (--target-modules) naming them"
    )


def target_regex(target_modules: list[str]) -> str:
    """A PEFT ``target_modules`` regex matching those layer names anywhere except pooler / heads."""
    alternatives = "|".join(re.escape(t) for t in target_modules)
    excluded = "|".join(_EXCLUDED_PARTS)
    return rf"^(?!.*(?:{excluded})).*(?:^|\.)(?:{alternatives})$"


class TrainableEncoder(nn.Module):
    """A DualEncoder with LoRA adapters (and an optional projection) whose adapters are the only trained weights."""

    def __init__(self, encoder: Any, config: FinetuneConfig) -> None:
        from peft import LoraConfig, get_peft_model

        super().__init__()
        self.encoder = encoder
        self.config = config
        self.asymmetric = config.adapter_mode == "asymmetric"
        self.query_only = config.adapter_mode == "query"
        backend = encoder.backend
        base = backend.model.float()
        self.target_modules = list(config.target_modules or detect_target_modules(base))
        unknown = [t for t in self.target_modules if t not in linear_layer_names(base)]
        if unknown:
            raise ValueError(
                f"target_modules {unknown} are not linear layers of this model; it has: "
                f"{', '.join(sorted(linear_layer_names(base)))}"
            )
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=target_regex(self.target_modules),
            bias="none",
        )
        if self.asymmetric:
            model = get_peft_model(base, lora, adapter_name="query")
            model.add_adapter("document", lora)
        elif self.query_only:
            model = get_peft_model(base, lora, adapter_name="query")
        else:
            model = get_peft_model(base, lora, adapter_name=SHARED_ADAPTER)
        if config.gradient_checkpointing:
            model.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model
        backend.model = model  # DualEncoder.embed runs whatever sits here, for either side
        backend.side_models = {}  # side switching happens in use_side, keeping every adapter trainable
        self.projection: nn.Linear | None = None
        if config.projection_dim is not None:
            self.projection = _init_projection(int(base.config.hidden_size), config.projection_dim, config.seed)
            backend.projection = self.projection
            backend.dim = encoder.dim = config.projection_dim
        self._trainable = [p for n, p in self.named_parameters() if "lora_" in n or n.startswith("projection.")]
        for p in self._trainable:
            p.requires_grad_(True)

    def use_side(self, side: str) -> None:
        """Route the next forward through ``side``'s adapter (asymmetric mode); a no-op when shared."""
        if not self.asymmetric:
            return
        self.model.set_adapter(side)
        for p in self._trainable:  # set_adapter freezes the inactive adapter; both train here
            p.requires_grad_(True)

    def embed(self, features: dict[str, torch.Tensor], side: str) -> torch.Tensor:
        if self.query_only and side == "document":
            # The base model as an index built without the adapter saw it: no adapter, no dropout, no gradient.
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad(), self.model.disable_adapter():
                    return self.encoder.embed(features, side)
            finally:
                self.model.train(was_training)
        self.use_side(side)
        return self.encoder.embed(features, side)

    def forward(self, query_features: dict[str, torch.Tensor], document_features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed(query_features, "query"), self.embed(document_features, "document")

    @torch.no_grad()
    def encode(self, texts: list[str], side: str, batch_size: int = 64) -> torch.Tensor:
        """Embeddings for evaluation and mining, in the caller's order (length-sorted batches inside)."""
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self.encoder.dim)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            features = self.encoder.tokenize([texts[i] for i in idx], side)
            out[idx] = self.embed(features, side).float().cpu()
        self.train(was_training)
        return out

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trained weights only (LoRA + projection), detached copies on the CPU."""
        return {n: p.detach().cpu().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        unexpected = [n for n in state if n not in params]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                "resume with the same model, adapter mode, rank, targets and projection"
            )
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device))

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters."""
        total = sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self._trainable), total


def _init_projection(hidden: int, out: int, seed: int) -> nn.Linear:
    """Identity when the sizes match, else a seeded orthogonal map: both start close to the base geometry."""
    layer = nn.Linear(hidden, out, bias=True)
    with torch.no_grad():
        if hidden == out:
            layer.weight.copy_(torch.eye(hidden))
        else:
            torch.nn.init.orthogonal_(layer.weight, generator=torch.Generator().manual_seed(seed))
        layer.bias.zero_()
    return layer
