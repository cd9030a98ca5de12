"""Where training metrics go: ``OUT/metrics.jsonl`` always (rank 0), MLflow too when it is installed.

One JSON object per line — ``{"step", "epoch", "loss", "lr", ...}`` after optimizer steps, ``{"step",
"dev_ndcg@10", ...}`` after evaluations — so a run can be plotted or compared with ``jq`` alone.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"


class MetricsLog:
    """Append metrics to ``OUT/metrics.jsonl``; mirror them to MLflow when ``use_mlflow`` allows and it imports."""

    def __init__(self, out: str | Path, *, enabled: bool = True, use_mlflow: bool | None = None, params: dict[str, Any] | None = None) -> None:
        self.enabled = enabled
        self.path = Path(out) / METRICS_NAME
        self._mlflow = None
        self._started = time.perf_counter()
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if use_mlflow is False:
            return
        try:
            import mlflow
        except ImportError:
            if use_mlflow:
                raise ImportError("MLflow logging needs mlflow: pip install 'deepseek-rag-finetune[mlflow]'") from None
            return
        self._mlflow = mlflow
        if mlflow.active_run() is None:
            mlflow.start_run(run_name=Path(out).name)
        if params:
            mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def log(self, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, "elapsed_s": round(time.perf_counter() - self._started, 2), **values}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._mlflow is not None:
            numeric = {k.replace("@", "_at_"): float(v) for k, v in values.items() if isinstance(v, (int, float))}
            self._mlflow.log_metrics(numeric, step=step)

    def close(self) -> None:
        if self._mlflow is not None and self._mlflow.active_run() is not None:
            self._mlflow.end_run()
