"""The training loop example runs end to end on a tiny model, and MLflow holds what each step logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "continuous_training.py"


def test_the_loop_logs_one_run_from_training_to_promotion(tmp_path):
    import mlflow

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = subprocess.run([sys.executable, str(EXAMPLE), "--tiny", "--out", str(tmp_path), "--users", "40"],
                            capture_output=True, text=True, timeout=900, cwd=workdir,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "7. promoted tuned: weights {'base': 0.0, 'tuned': 100.0}" in result.stdout
    assert "vs default" in result.stdout and "rated requests per arm needed" in result.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    versions = client.search_model_versions("name='deepseek-rag-retriever'")
    assert [int(v.version) for v in versions] == [1]
    run = client.get_run(versions[0].run_id)
    assert run.data.params["lr"] and run.data.params["index.spec"] == "Flat"  # the fine-tune and the index build
    assert "loss" in run.data.metrics and "compare.ndcg_at_10.p_randomization" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]  # per step
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"training_report.json", "adapter", "index", "compare", "retriever"} <= top
    assert {a.path for a in client.list_artifacts(run.info.run_id, "adapter")} >= {"adapter/deepseek_rag_adapter.json",
                                                                                     "adapter/shared"}
    assert run.data.tags["deepseek_rag.stage"] == "promoted"
    assert list(workdir.iterdir()) == []  # artifacts sit beside the database, not in the directory it ran from
    assert (tmp_path / "mlartifacts").is_dir()
