"""The example script runs (on a tiny model, so the test stays fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune_domain_pairs.py"


def test_example_runs():
    result = subprocess.run([sys.executable, str(EXAMPLE), "--tiny"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 50 pairs" in result.stdout and "trained" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.strip().endswith(".")]) >= 2  # two hits printed
