"""JSON that every parser reads: what the chunk store writes and what every ``--json`` prints.

Python's ``json`` writes a float NaN or infinity as bare ``NaN`` / ``Infinity``, which is not JSON (JavaScript's
``JSON.parse``, jq, Go and Rust refuse it). Here they become the strings ``"nan"``, ``"inf"`` and ``"-inf"``
(one rule for stored metadata and for output, so a value reads the same whichever way it came), numpy scalars
become plain numbers, and anything else unknown becomes its ``str``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (nested in dicts, lists, tuples) replaced by its string."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``: never ``NaN`` or ``Infinity``; Unicode kept as is."""
    options.setdefault("ensure_ascii", False)
    return json.dumps(finite(value), default=str, allow_nan=False, **options)
