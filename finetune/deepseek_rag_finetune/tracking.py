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
        from deepseek_rag.tracking import mlflow_module

        mlflow = mlflow_module(required=bool(use_mlflow))  # points it at $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
        if mlflow is None:
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

    def log_outputs(self, out: str | Path) -> None:
        """Log the training report and the adapter folder as artifacts, and leave the run id in the folder so the
        index build and the comparison log to the same run (``deepseek_rag.tracking``)."""
        if self._mlflow is None or self._mlflow.active_run() is None:
            return
        from deepseek_rag.tracking import RUN_FILE, write_run_file

        out = Path(out)
        run = self._mlflow.active_run()
        for path in sorted(out.iterdir()):
            if path.name == "training_report.json":
                self._mlflow.log_artifact(str(path))
            elif path.is_file() and path.name not in (RUN_FILE, METRICS_NAME):
                self._mlflow.log_artifact(str(path), artifact_path="adapter")  # manifest, projection
            elif path.is_dir() and (path / "adapter_config.json").is_file():  # a PEFT adapter of one side
                self._mlflow.log_artifacts(str(path), artifact_path=f"adapter/{path.name}")
        write_run_file(out, run.info.run_id)

    def close(self) -> None:
        if self._mlflow is not None and self._mlflow.active_run() is not None:
            self._mlflow.end_run()
