"""The ``EncoderBackend`` protocol: the forward pass of a dual encoder, behind ``DualEncoder``.

``DualEncoder`` keeps what is the same for every runtime — prefixes, tokenization, length-sorted batching,
the order results come back in — and hands each padded batch to a backend, which returns unit-length float32
vectors. The backend owns what depends on the runtime: loading the weights, per-side adapters, pooling and
projection, device and precision, and its fingerprint (what its vectors mean).

Adding a backend: implement the members below in ``encoding/<name>_backend.py``, import its runtime inside
the functions that need it (a missing one raises an error naming the extra), and add its name to
``EncoderConfig.backend``. Its vectors must match the torch backend's on the same model (tests compare).
Backends: ``torch_backend.py`` (transformers folders), ``onnx_backend.py`` and ``torchscript_backend.py``
(folders ``deepseek-rag export`` wrote; ``export_folder.py`` reads their manifest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class EncoderBackend(Protocol):
    name: str
    """``"torch"``, ``"onnx"``, ``"torchscript"``..."""
    dim: int
    """Output dimension (after any projection)."""
    max_positions: int
    """The longest input the model accepts, in tokens."""
    device: str
    """Where the forward pass runs (``"cpu"``, ``"cuda"``...): a CPU gets token-capped batches."""
    base_fingerprint: str
    """A hash of the base model (config and weights), the same for every runtime of the same model."""
    adapter_hashes: dict[str, str]
    """Per side, a hash of the adapter applied on top of the base model (absent: none)."""
    quantization: str | None
    """None for the model's own weights, ``"int8"`` for a quantized export: indexes compare it (fingerprint.py)."""

    def forward(self, features: Mapping[str, np.ndarray], side: str) -> np.ndarray:
        """Token ids + attention mask of one padded batch → ``(n, dim)`` unit float32 vectors for ``side``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Runtime details for ``info`` and logs (precision, device, threads)."""
        ...
