"""The ONNX Runtime backend: an exported encoder's graphs, one ``InferenceSession`` per distinct graph file.

The graphs (``deepseek-rag export --format onnx``) take token ids and attention masks of any batch size and
sequence length and return unit float32 vectors: pooling, the projection and normalisation are inside them, so
this module only feeds arrays in and checks what comes out. Sessions use every graph optimisation ONNX
Runtime has (``ORT_ENABLE_ALL``), a configurable number of intra-op threads that sleep between runs, and the
CUDA execution provider when it is available (or asked for). ``InferenceSession.run`` is thread-safe, so
concurrent searches share a session. Nothing here imports torch or transformers: a serving install needs onnxruntime, numpy and tokenizers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from .export_folder import ExportManifest

logger = logging.getLogger(__name__)

THREADS_ENV = "DEEPSEEK_RAG_ONNX_THREADS"
SPIN_ENV = "DEEPSEEK_RAG_ONNX_SPIN"
_NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def import_onnxruntime() -> Any:
    """``onnxruntime``, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "the ONNX backend needs onnxruntime: pip install 'deepseek-rag[onnx]' "
            "(or onnxruntime-gpu for the CUDA execution provider)"
        ) from exc
    return onnxruntime


def resolve_threads(threads: int | None) -> int:
    """Intra-op threads: the config's, else $DEEPSEEK_RAG_ONNX_THREADS, else 0 (ONNX Runtime's default)."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return 0
        try:
            threads = int(raw)
        except ValueError:
            raise InvalidInputError(f"{THREADS_ENV}={raw!r} is not a whole number of threads") from None
    if threads < 0:
        raise InvalidInputError(f"threads={threads} must be 0 (ONNX Runtime's default) or more")
    return threads


def providers_for(ort: Any, device: str | None) -> tuple[list[Any], str]:
    """Execution providers for ``device`` (None: CUDA when onnxruntime-gpu sees a GPU, else CPU) and the device name."""
    available = ort.get_available_providers()
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise InvalidInputError(
                f"device={device!r} needs ONNX Runtime's CUDAExecutionProvider, which this onnxruntime lacks "
                f"(it has {', '.join(available)}): pip install onnxruntime-gpu, or use device='cpu'"
            )
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], device
    if device != "cpu":
        raise InvalidInputError(f"device={device!r}: the ONNX backend runs on 'cpu' or 'cuda[:N]'")
    return ["CPUExecutionProvider"], device


class OnnxBackend:
    """ONNX Runtime sessions for the sides of an exported encoder folder."""

    name = "onnx"

    def __init__(self, folder: str | Path, manifest: ExportManifest, *, device: str | None = None,
                 threads: int | None = None) -> None:
        ort = import_onnxruntime()
        self.folder = Path(folder)
        self.manifest = manifest
        self.dim = manifest.dim
        self.max_positions = manifest.max_positions
        self.base_fingerprint = manifest.base_fingerprint
        self.adapter_hashes = dict(manifest.adapter_hashes)
        self.quantization = manifest.quantization
        self.dtype = manifest.precision
        self.threads = resolve_threads(threads)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # errors only: the optimiser's notes are not for users
        # Threads sleep between runs instead of spin-waiting ($DEEPSEEK_RAG_ONNX_SPIN=1 restores spinning): a query
        # is encoded, then searched by FAISS on the same cores, which spinning threads take. Two cores, tiny model,
        # encode + search p50: 0.9 ms spinning, 0.5 ms not; a torch encoder in the same process: 35-124 vs 1-2 ms.
        spin = os.environ.get(SPIN_ENV, "0").strip() == "1"
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers, self.device = providers_for(ort, device)
        sessions: dict[Path, Any] = {}
        self.sessions: dict[str, Any] = {}
        self._inputs: dict[str, list[tuple[str, Any]]] = {}  # per side: (input name, numpy dtype), in graph order
        for side in manifest.graphs:
            path = manifest.graph_path(self.folder, side)
            if path not in sessions:
                try:
                    sessions[path] = ort.InferenceSession(str(path), options, providers=providers)
                except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph...)
                    raise InvalidInputError(f"ONNX Runtime cannot load {path}: {exc}. Export the encoder again.") from exc
            self.sessions[side] = sessions[path]
            self._inputs[side] = self._check_graph(sessions[path], path)
        self.providers = self.sessions[next(iter(self.sessions))].get_providers()

    def _check_graph(self, session: Any, path: Path) -> list[tuple[str, Any]]:
        """The graph must take the manifest's inputs and return ``(batch, dim)`` vectors."""
        inputs = {i.name: i for i in session.get_inputs()}
        missing = [n for n in ("input_ids", "attention_mask") if n not in inputs and n in self.manifest.input_names]
        unknown = sorted(set(inputs) - {"input_ids", "attention_mask", "token_type_ids"})
        if missing or unknown:
            raise InvalidInputError(f"{path} takes inputs {sorted(inputs)}; an exported encoder takes input_ids, "
                                    "attention_mask and optionally token_type_ids. Export the encoder again.")
        outputs = session.get_outputs()
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            shapes = [(o.name, o.shape) for o in outputs]
            raise InvalidInputError(f"{path} returns {shapes}; an exported encoder returns one (batch, dim) output")
        width = outputs[0].shape[1]
        if isinstance(width, int) and width != self.dim:
            raise InvalidInputError(
                f"{path} returns {width}-dimensional vectors but its manifest says dim={self.dim}; "
                "the graph and the manifest come from different models: export the encoder again"
            )
        return [(n, _NUMPY_TYPES.get(i.type, np.int64)) for n, i in inputs.items()]

    def forward(self, features: Mapping[str, Any], side: str) -> np.ndarray:
        session = self.sessions.get(side)
        if session is None:
            self.manifest.graph_path(self.folder, side)  # raises: that side was not exported
        ids = np.asarray(features["input_ids"])
        feed = {}
        for name, dtype in self._inputs[side]:
            value = features.get(name)
            if value is None:  # token_type_ids: all zeros for one-segment inputs, as the tokenizer would give
                value = np.zeros_like(ids)
            feed[name] = np.asarray(value, dtype=dtype)
        out = session.run(None, feed)[0]
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise InvalidInputError(f"the {side} graph of {self.folder} returned shape {out.shape}, expected (n, {self.dim}); "
                                    "export the encoder again")
        return np.ascontiguousarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "dtype": self.dtype, "threads": self.threads,
                "providers": self.providers, "graphs": dict(self.manifest.graphs)}
