"""MLflow tracking of the fine-tune → re-index → compare → promote loop (the ``[mlflow]`` extra).

One MLflow run follows a retriever from training to promotion: ``deepseek-rag finetune`` opens it (parameters,
metrics per step, the training report and the adapter folder as artifacts) and leaves its id in the adapter
folder (``mlflow_run.json``); building an index with that adapter, comparing that index with another, and
promoting it log to the same run (index fingerprint and version, nDCG/Recall, the paired test) — found through
the adapter folder the index's manifest names. A promoted retriever is registered as a version of a model in
MLflow's registry.

The tracking store is ``$MLFLOW_TRACKING_URI``, else a local SQLite database ``sqlite:///mlflow.db`` (MLflow 3
refuses the old ``./mlruns`` file store). With a SQLite store, runs go to the experiment ``deepseek-rag`` whose
artifacts live beside the database (``mlartifacts/``), not in whatever directory the command ran from
(``$MLFLOW_EXPERIMENT_NAME`` / ``_ID`` still win). mlflow is imported only here, inside the functions that need it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT = "deepseek-rag"
RUN_FILE = "mlflow_run.json"


def mlflow_module(required: bool = True) -> Any:
    """mlflow, pointed at the tracking store; None when it is not installed and not ``required``."""
    try:
        import mlflow
    except ImportError:
        if required:
            raise MissingDependencyError("MLflow tracking needs mlflow: pip install 'deepseek-rag[mlflow]'") from None
        return None
    mlflow.set_tracking_uri(tracking_uri())
    _use_experiment_beside_database(mlflow)
    return mlflow


def _use_experiment_beside_database(mlflow: Any) -> None:
    """Point new runs at an experiment whose artifact root sits next to the SQLite file.

    MLflow's default experiment stores artifacts under ``./mlruns`` of the current directory, which scatters
    adapter copies into whatever checkout a command ran in.
    """
    uri = tracking_uri()
    if not uri.startswith("sqlite:///") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return
    database = Path(uri[len("sqlite:///"):]).resolve()
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        try:
            mlflow.create_experiment(EXPERIMENT, artifact_location=(database.parent / "mlartifacts").as_uri())
        except mlflow.exceptions.MlflowException:  # another process created it first
            pass
    mlflow.set_experiment(EXPERIMENT)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def write_run_file(folder: str | Path, run_id: str) -> Path:
    """Leave ``run_id`` in ``folder`` (an adapter folder) so later steps log to the same run."""
    path = Path(folder) / RUN_FILE
    path.write_text(json.dumps({"run_id": run_id, "tracking_uri": tracking_uri()}) + "\n", encoding="utf-8")
    return path


def run_of_adapter(adapter: str | Path | None) -> str | None:
    """The MLflow run id recorded in an adapter folder, if any."""
    if not adapter:
        return None
    path = Path(adapter) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["run_id"]
    except (ValueError, KeyError):
        logger.warning("%s is not a readable run file; not logging to MLflow", path)
        return None


def run_of_index(index: Any) -> str | None:
    """The run of the adapter an index was built with (from its encoder config)."""
    return run_of_adapter(index.encoder.config.adapter)


def log_to_run(run_id: str, *, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None,
               tags: Mapping[str, str] | None = None, artifacts: Mapping[str, Any] | None = None, step: int | None = None) -> None:
    """Add to an existing run: parameters (first value wins, as MLflow wants), metrics, tags, JSON artifacts."""
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    existing = client.get_run(run_id).data.params
    for key, value in (params or {}).items():
        if key not in existing:
            client.log_param(run_id, key, str(value)[:500])
    for key, value in (metrics or {}).items():
        if value is not None:
            client.log_metric(run_id, key.replace("@", "_at_"), float(value), step=step or 0)
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    if artifacts:
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in artifacts.items():
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(content, indent=2, default=str), encoding="utf-8")
                client.log_artifact(run_id, str(target), artifact_path=str(Path(name).parent) if Path(name).parent.name else None)


def log_index_build(index: Any, path: str | Path) -> str | None:
    """Log a built index to its adapter's run: fingerprint, version, spec, counts and the manifest."""
    run_id = run_of_index(index)
    if run_id is None or mlflow_module(required=False) is None:
        return None
    info = index.info()
    log_to_run(run_id, params={"index.path": Path(path).resolve(), "index.spec": info["index_spec"],
                               "index.encoder_fingerprint": json.dumps(info["encoder"], sort_keys=True)},
               metrics={"index.version": info["version"] or 0, "index.documents": info["documents"],
                        "index.chunks": info["chunks"]},
               tags={"deepseek_rag.stage": "indexed"}, artifacts={"index/manifest.json": index.manifest()})
    logger.info("logged the index build to MLflow run %s", run_id)
    return run_id


def log_comparison(result: Mapping[str, Any], index_b: Any) -> str | None:
    """Log a ``compare`` result (B against A) to B's run: each metric, the difference, its CI and p-values."""
    run_id = run_of_index(index_b)
    if run_id is None or mlflow_module(required=False) is None:
        return None
    metrics: dict[str, float] = {}
    for name, row in result["metrics"].items():
        metrics.update({f"compare.{name}.a": row["a"], f"compare.{name}.b": row["b"],
                        f"compare.{name}.difference": row["difference"], f"compare.{name}.ci95_low": row["ci95"][0],
                        f"compare.{name}.ci95_high": row["ci95"][1], f"compare.{name}.p_randomization": row["p_randomization"],
                        f"compare.{name}.p_t_test": row["p_t_test"], f"compare.{name}.wins": row["wins"]})
    log_to_run(run_id, metrics=metrics, tags={"deepseek_rag.stage": "compared"}, artifacts={"compare/result.json": result})
    logger.info("logged the comparison to MLflow run %s", run_id)
    return run_id


def register_retriever(index_dir: str | Path, model_name: str) -> dict[str, Any]:
    """Register a (promoted) retriever as a new version of ``model_name``: its index manifest, from its run."""
    from .document_index import DocumentIndex

    mlflow = mlflow_module()
    index = DocumentIndex.load(index_dir, writable=False)
    run_id = run_of_index(index)
    if run_id is None:  # a retriever without a fine-tuning run (the base model): give it a run of its own
        with mlflow.start_run(run_name=f"retriever {Path(index_dir).name}") as run:
            run_id = run.info.run_id
    log_to_run(run_id, artifacts={"retriever/manifest.json": {**index.manifest(), "path": str(Path(index_dir).resolve())}},
               tags={"deepseek_rag.stage": "promoted"})
    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{model_name}'"):
        client.create_registered_model(model_name, description="deepseek-rag retrievers (index manifest + encoder)")
    source = f"{client.get_run(run_id).info.artifact_uri}/retriever"  # the manifest names the index and its encoder
    version = client.create_model_version(model_name, source, run_id=run_id, tags={"index": str(Path(index_dir).resolve())})
    logger.info("registered %s as %s version %s", index_dir, model_name, version.version)
    return {"model": model_name, "version": int(version.version), "run_id": run_id}
