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


def check_fingerprint(expected: dict[str, Any], actual: dict[str, Any], where: str) -> None:
    """Raise :class:`EncoderMismatchError` naming every field where ``actual`` differs from ``expected``."""
    keys = [k for k in expected if k not in ("model", "query_adapter")]
    diffs = [f"{k}: index has {expected[k]!r}, encoder has {actual.get(k)!r}" for k in keys if expected[k] != actual.get(k)]
    if diffs:
        raise EncoderMismatchError(
            f"the index at {where} was built with encoder {expected.get('model')!r} and cannot be searched with "
            f"{actual.get('model')!r} ({'; '.join(diffs)}). Open it with the same model and adapter, or rebuild it."
        )
