"""The TorchScript backend: ``torch.jit.trace``'d side modules from ``deepseek-rag export --format torchscript``.

Each traced module takes the manifest's inputs (token ids, attention mask[, type ids]) positionally, in any
batch size and sequence length, and returns unit float32 vectors — pooling, projection and normalisation were
traced with the transformer. It needs torch but neither transformers nor peft: adapters were merged before
tracing. Modules run under ``torch.inference_mode``; a traced module may be called from many threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from .export_folder import ExportManifest

logger = logging.getLogger(__name__)


class TorchScriptBackend:
    """Traced side modules of an exported encoder folder, run by the TorchScript interpreter."""

    name = "torchscript"

    def __init__(self, folder: str | Path, manifest: ExportManifest, *, device: str | None = None) -> None:
        try:
            import torch
        except ImportError as exc:
            raise MissingDependencyError("the TorchScript backend needs torch: pip install 'deepseek-rag[torch]'") from exc
        self.folder = Path(folder)
        self.manifest = manifest
        self.dim = manifest.dim
        self.max_positions = manifest.max_positions
        self.base_fingerprint = manifest.base_fingerprint
        self.adapter_hashes = dict(manifest.adapter_hashes)
        self.quantization = manifest.quantization
        self.dtype = manifest.precision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded: dict[Path, Any] = {}
        self.modules: dict[str, Any] = {}
        for side in manifest.graphs:
            path = manifest.graph_path(self.folder, side)
            if path not in loaded:
                try:
                    loaded[path] = torch.jit.load(str(path), map_location=self.device).eval()
                except RuntimeError as exc:
                    raise InvalidInputError(f"torch cannot load {path} as TorchScript: {exc}. Export the encoder again.") from exc
            self.modules[side] = loaded[path]

    def forward(self, features: Mapping[str, Any], side: str) -> np.ndarray:
        import torch

        module = self.modules.get(side)
        if module is None:
            self.manifest.graph_path(self.folder, side)  # raises: that side was not exported
        ids = np.asarray(features["input_ids"])
        inputs = []
        for name in self.manifest.input_names:
            value = features.get(name)
            value = np.zeros_like(ids) if value is None else value
            inputs.append(torch.as_tensor(np.asarray(value, dtype=np.int64), device=self.device))
        with torch.inference_mode():
            out = module(*inputs)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise InvalidInputError(f"the {side} module of {self.folder} returned shape {tuple(out.shape)}, expected "
                                    f"(n, {self.dim}); export the encoder again")
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        import torch

        return {"backend": self.name, "device": self.device, "dtype": self.dtype, "threads": torch.get_num_threads(),
                "graphs": dict(self.manifest.graphs)}
