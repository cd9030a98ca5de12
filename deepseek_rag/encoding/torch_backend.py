"""The torch backend: a transformers model (plus LoRA adapters per side and a projection) run by PyTorch.

Per-side adapters (``deepseek-rag finetune --adapter-mode asymmetric`` or ``query``) are merged into one copy
of the base model per side when loaded, so the query side and the document side are separate modules: no
adapter switching, nothing shared that a concurrent forward pass could flip. A shared adapter is merged into
the base once. The cost is one model copy per adapted side in memory; the forward pass costs nothing extra.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderMismatchError, InvalidInputError, MissingDependencyError
from .fingerprint import base_model_fingerprint
from .model_folder import SIDES, hash_files, read_json

logger = logging.getLogger(__name__)


def import_transformers() -> Any:
    """``transformers`` (and so torch), or an error naming the extra that installs them."""
    try:
        import torch  # noqa: F401  (transformers without torch loads tokenizers but no model)
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"the torch encoder backend needs torch and transformers ({exc.name} is missing): "
            "pip install 'deepseek-rag[torch]'. Without them, load the model's export instead "
            "(`deepseek-rag export` on a machine with torch; then model=DIR, or --model DIR), which needs only "
            "'deepseek-rag[onnx]'"
        ) from exc
    return transformers


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar unless this package logs at INFO (then it is progress a user asked for)."""
    from transformers.utils import logging as hf_logging

    if logger.isEnabledFor(logging.INFO) or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def resolve_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "float32":
        return torch.float32
    if dtype == "float16":
        if not device.startswith("cuda"):
            raise InvalidInputError("dtype='float16' needs a CUDA device; use 'bfloat16' or 'float32' on a CPU")
        return torch.float16
    if dtype == "bfloat16":
        return torch.bfloat16
    # auto: half precision on CUDA; on a CPU bf16 only with native bf16 instructions (AVX512-BF16, AMX):
    # emulated bf16 measured 6-20x slower than float32 on AVX2-only CPUs, native bf16 2.7x faster.
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """Token embeddings → one vector per text, as sentence-transformers pools (mean, cls, max, lasttoken)."""
    import torch

    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    expanded = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(expanded == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * expanded).sum(dim=1) / expanded.sum(dim=1).clamp(min=1e-9)


class TorchBackend:
    """A transformers model on PyTorch; ``model_for(side)`` is the module that encodes that side."""

    name = "torch"
    quantization = None
    """Weights are the model's own (float32, or cast to bf16/fp16 at load): nothing quantized."""

    def __init__(
        self, model_name: str, *, pooling: str, device: str | None, dtype: str, st_config: Mapping[str, Any],
        adapter_folder: Path | None = None, adapter: Mapping[str, Any] | None = None,
    ) -> None:
        transformers = import_transformers()
        try:
            with quiet_loading():
                model = transformers.AutoModel.from_pretrained(model_name)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot load model {model_name!r}: {exc}. Give a local transformers or "
                "sentence-transformers folder (nothing is downloaded when offline)."
            ) from exc
        self.base_fingerprint = base_model_fingerprint(model)
        if adapter is not None and adapter.get("base_model_fingerprint") not in (None, self.base_fingerprint):
            raise EncoderMismatchError(
                f"adapter {str(adapter_folder)!r} was trained on base model {adapter.get('base_model')!r} "
                f"(fingerprint {adapter.get('base_model_fingerprint')}), not on {model_name!r} "
                f"(fingerprint {self.base_fingerprint}); load it with the model it was trained on"
            )
        self.pooling = pooling
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.projection: Any = None
        self.adapter_hashes: dict[str, str] = {}
        self.side_models: dict[str, Any] = {}
        if adapter is not None:
            model = self._attach_adapter(model, adapter_folder, adapter)
        if self.projection is None and st_config.get("dense"):
            self.projection = load_dense(Path(model_name) / st_config["dense"])
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.side_models = {side: m.to(self.device, dtype=self.dtype).eval() for side, m in self.side_models.items()}
        if self.projection is not None:
            self.projection = self.projection.to(self.device, dtype=self.dtype).eval()
        self.dim = self.projection.out_features if self.projection is not None else int(model.config.hidden_size)

    def _attach_adapter(self, model: Any, folder: Path, adapter: Mapping[str, Any]) -> Any:
        import torch
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise MissingDependencyError("LoRA adapters need peft: pip install 'deepseek-rag[torch]'") from exc
        from safetensors.torch import load_file

        sides = adapter.get("sides", {})
        names = {side: sides.get(side) for side in SIDES}
        # peft asks transformers a deprecated question while loading; the FutureWarning says nothing to our users
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if names["query"] and names["query"] == names["document"]:
            # One shared adapter: merge it into the base once, so encoding costs nothing extra.
            model = PeftModel.from_pretrained(model, str(folder / names["query"])).merge_and_unload()
        else:
            for side, sub in names.items():  # one merged copy per adapted side; the other reads the base
                if sub:
                    adapted = PeftModel.from_pretrained(copy.deepcopy(model), str(folder / sub))
                    self.side_models[side] = adapted.merge_and_unload()
        projection = adapter.get("projection")
        if projection:
            state = load_file(str(folder / projection["file"]))
            weight = state["weight"]
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
            layer.load_state_dict(state)
            self.projection = layer
        # An index holds document vectors only: what must match is the document side. A query-side
        # adapter (trained to move queries towards unchanged documents) opens indexes built without it.
        projection_hash = hash_files(folder / projection["file"]) if projection else ""
        for side in SIDES:
            if names[side] or projection:
                side_hash = hash_files(folder / names[side]) if names[side] else "base"
                self.adapter_hashes[side] = f"{side_hash}{'+' + projection_hash if projection_hash else ''}"
        return model

    def model_for(self, side: str) -> Any:
        """The module that encodes ``side`` (its own merged copy when that side has an adapter)."""
        return self.side_models.get(side, self.model)

    def embed(self, features: Mapping[str, Any], side: str) -> Any:
        """Forward pass → pooled, projected, normalised embeddings as a torch tensor (gradients allowed)."""
        import torch

        features = {k: v.to(self.device) for k, v in features.items()}
        hidden = self.model_for(side)(**features).last_hidden_state
        pooled = pool(hidden, features["attention_mask"], self.pooling)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def forward(self, features: Mapping[str, Any], side: str) -> np.ndarray:
        import torch

        tensors = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for k, v in features.items()}
        with torch.inference_mode():
            return self.embed(tensors, side).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import torch

        return {"backend": self.name, "device": self.device, "dtype": str(self.dtype).replace("torch.", ""),
                "threads": torch.get_num_threads(), "side_models": sorted(self.side_models)}


def load_dense(folder: Path) -> Any:
    """A sentence-transformers Dense module with identity activation (as ``finetune export`` writes) as a projection."""
    import torch

    cfg = read_json(folder / "config.json") or {}
    activation = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if not activation.endswith("Identity"):
        raise InvalidInputError(f"{folder}: Dense modules with activation {activation!r} are not supported (only Identity)")
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    state = {k.removeprefix("linear."): v for k, v in state.items()}
    layer = torch.nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias="bias" in state)
    layer.load_state_dict(state)
    return layer
