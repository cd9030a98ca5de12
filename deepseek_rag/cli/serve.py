"""``deepseek-rag serve``: the HTTP retrieval service over one index directory (uvicorn + ``serve.create_app``)."""

from __future__ import annotations

import json
import logging
import os

import click

from .common import wait_option


@click.command("serve")
@click.argument("index_dir", type=click.Path(file_okay=False), required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="serve.toml naming A/B arms (each an index directory and a weight); see the README.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--api-key", envvar="DEEPSEEK_RAG_API_KEY", default=None,
              help="Bearer token writes need (reads too, unless --read-key is set) [env: DEEPSEEK_RAG_API_KEY].")
@click.option("--read-key", envvar="DEEPSEEK_RAG_READ_KEY", default=None,
              help="Bearer token reads need [env: DEEPSEEK_RAG_READ_KEY].")
@click.option("--allow-unauthenticated-writes", is_flag=True,
              help="Accept writes without a key (only on a loopback address).")
@click.option("--max-request-bytes", type=click.IntRange(1), default=32 * 1024 * 1024, show_default=True,
              help="Larger request bodies get 413.")
@click.option("--timeout-s", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="A request with no response by then gets 504.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes (each holds the index memory-mapped; writes still go one at a time).")
@click.option("--batch-window-ms", type=click.FloatRange(0), default=2.0, show_default=True,
              help="Encode queries arriving within this window together (0: off).")
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True, help="Most queries per forward pass.")
@click.option("--model", envvar="DEEPSEEK_RAG_MODEL", default=None,
              help="Encoder for a new, empty index (an existing index names its own).")
@click.option("--mlflow-model", default=None, help="Register a promoted arm as a version of this MLflow model.")
@wait_option
def serve_command(index_dir, config_file, host, port, api_key, read_key, allow_unauthenticated_writes, max_request_bytes,
                  timeout_s, workers, batch_window_ms, max_batch, model, mlflow_model, wait) -> None:
    """Serve an index over HTTP: retrieve, ask, upsert and delete documents, metrics.

    The directory is created as an empty index when it does not exist. Writes need --api-key; reads need
    --read-key when one is set.

    \b
    Examples:
      deepseek-rag serve contracts.idx --port 8000 --api-key "$KEY"
      curl -s localhost:8000/v1/retrieve -d '{"query": "who may terminate?", "top_k": 3}' -H 'content-type: application/json'
    """
    # OpenMP threads (torch's and faiss's) sleep when idle instead of spinning: in a server, query encoding, the
    # writer's document encoding, searches and the event loop share the cores, and spinning threads steal them
    # (measured: 5.6 vs 32 ms CPU per single-query encode on a busy 2-core machine). Read when torch/faiss load,
    # which is below; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from ..serve.app import SETTINGS_ENV, create_app
    from ..serve.arms import ExperimentSettings
    from ..serve.settings import ServeSettings

    if (index_dir is None) == (config_file is None):
        raise click.UsageError("give an INDEX_DIR or --config serve.toml (one of them)")
    experiment = ExperimentSettings.from_toml(config_file) if config_file else None
    settings = ServeSettings(
        index=os.path.abspath(index_dir) if index_dir else "", experiment=experiment, host=host, port=port, api_key=api_key, read_key=read_key,
        allow_unauthenticated_writes=allow_unauthenticated_writes, max_request_bytes=max_request_bytes,
        timeout_s=timeout_s, batch_window_ms=batch_window_ms, max_batch=max_batch, model=model, mlflow_model=mlflow_model,
        lock_wait_s=max(wait, 30.0),
    )
    logging.getLogger("deepseek_rag.serve.access").setLevel(logging.INFO)
    logging.getLogger("deepseek_rag.serve.app").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log_config = {"version": 1, "disable_existing_loggers": False}  # keep ours; uvicorn's access log is off
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_config=log_config)
        return
    os.environ[SETTINGS_ENV] = json.dumps(settings.to_dict())
    uvicorn.run("deepseek_rag.serve.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                access_log=False, log_config=log_config)
