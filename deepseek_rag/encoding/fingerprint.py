"""Encoder identity: what must match between the encoder that built an index and the one that searches it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ..errors import EncoderMismatchError


def base_model_fingerprint(model: Any) -> str:
    """A short hash that identifies a base transformer by its config and its input embeddings.

    Paths differ between machines, weights do not: two folders holding the same model agree, a model of
    the same architecture with other weights does not. Adapters record it to refuse the wrong base.
    """
    import torch

    config = model.config.to_dict()
    for transient in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures"):
        config.pop(transient, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    weight = model.get_input_embeddings().weight.detach()
    sample = weight[:: max(1, weight.shape[0] // 2048)].to(torch.float32).cpu().numpy()
    digest.update(np.ascontiguousarray(sample).tobytes())
    return digest.hexdigest()[:16]


def check_fingerprint(
    expected: dict[str, Any], actual: dict[str, Any], where: str, *, allow_precision_mismatch: bool = False
) -> None:
    """Raise :class:`EncoderMismatchError` naming every field where ``actual`` differs from ``expected``.

    ``quantization`` (None, or ``"int8"`` for a quantized export) is compared even when the index's record has
    no such field (indexes written before exports existed are float32): int8 vectors are close to float32 ones
    but not equal, so searching across precisions needs ``allow_precision_mismatch=True``.
    """
    keys = [k for k in expected if k not in ("model", "query_adapter", "quantization")]
    diffs = [f"{k}: index has {expected[k]!r}, encoder has {actual.get(k)!r}" for k in keys if expected[k] != actual.get(k)]
    if diffs:
        raise EncoderMismatchError(
            f"the index at {where} was built with encoder {expected.get('model')!r} and cannot be searched with "
            f"{actual.get('model')!r} ({'; '.join(diffs)}). Open it with the same model and adapter, or rebuild it."
        )
    built, searching = expected.get("quantization"), actual.get("quantization")
    if built != searching and not allow_precision_mismatch:
        raise EncoderMismatchError(
            f"the index at {where} was built with {built or 'float32'} weights and the encoder "
            f"{actual.get('model')!r} has {searching or 'float32'} weights: same model, but its vectors differ "
            "slightly (cosine ~0.98). Pass EncoderConfig(allow_precision_mismatch=True) (CLI: --allow-int8) to search "
            "it anyway, or rebuild the index with this encoder."
        )
