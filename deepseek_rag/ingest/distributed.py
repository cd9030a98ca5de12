"""Chunk and encode documents on a Dask cluster; the caller's process stays the single writer of the index.

``prepare_on_dask(documents, encoder, settings, "local:4" | "tcp://scheduler:8786")`` splits the documents into
partitions (in order) and sends each to a worker, which loads the encoder once per process (from the encoder's
config: the same model folder, adapter and precision must be there) and runs the pure ingest step
(:func:`~deepseek_rag.ingest.preparation.prepare_documents`: language, chunks, embedding texts, BM25 terms) and
the encoder on it. The driver gathers the partitions in their order — so chunk ids, chunks and vectors are those
a single-process build makes — and hands them to :meth:`DocumentIndex.add_prepared`, which trains the IVF
codebooks on the vectors of every partition and adds them.

Dask gives the rest: a worker that dies mid-partition (killed, out of memory) has its partitions rerun on another
worker (the scheduler's ``allowed-failures``); a partition that raises is split into its documents, and the
documents that still fail are reported (id and reason) while the rest are indexed. A progress bar (tqdm) counts
finished partitions. ``local:N`` starts a ``LocalCluster`` of N single-threaded worker processes for the call.
dask is imported here only; a missing one names the ``dask`` extra.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..documents import Document
from ..errors import DeepSeekRAGError, InvalidInputError, MissingDependencyError
from .preparation import PreparedBatch, check_batch, prepare_documents

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
PARTITIONS_PER_WORKER = 4
_encoders: dict[str, Any] = {}  # one encoder per worker process, by config
_loads = {"count": 0}


class DaskUnavailableError(DeepSeekRAGError, ConnectionError):
    """No Dask scheduler answers at the address given."""


class PartitionLostError(DeepSeekRAGError, RuntimeError):
    """The cluster gave up on a partition (its workers died more often than the scheduler allows); nothing was
    written: the driver writes only after every partition is back."""


@dataclass
class PartitionResult:
    """What one worker sends back for one partition."""

    position: int
    batch: PreparedBatch
    vectors: np.ndarray
    failures: list[tuple[str, str]]
    worker: str
    encoder_loads: int
    fingerprint: dict[str, Any]


@dataclass
class DistributedBatch:
    """Every partition gathered, in document order."""

    batch: PreparedBatch
    vectors: np.ndarray
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(document id, reason) of each document a worker could not prepare; the rest are in ``batch``."""
    partitions: int = 0
    workers: dict[str, int] = field(default_factory=dict)
    """Worker address → encoder loads reported by its last partition (1 when each loaded it once)."""


# ------------------------------------------------------------------------------------------------ worker side
def prepare_partition(position: int, documents: Sequence[Document], encoder_config: dict[str, Any],
                      settings: dict[str, Any], threads: int | None = None) -> PartitionResult:
    """Run on a worker: chunk, analyse and encode one partition (bad documents isolated and reported)."""
    from ..settings import IndexSettings

    encoder = _worker_encoder(encoder_config, threads)
    index_settings = IndexSettings.from_dict(settings)
    failures: list[tuple[str, str]] = []
    try:
        batch = prepare_documents(list(documents), encoder, index_settings)
    except Exception:  # one bad document fails the batch: find it, keep the others
        parts = []
        for document in documents:
            try:
                parts.append(prepare_documents([document], encoder, index_settings))
            except Exception as exc:
                failures.append((getattr(document, "id", repr(document)), f"{type(exc).__name__}: {exc}"))
        batch = concatenate([p for p in parts])
    vectors = encoder.encode_documents(batch.embedding_texts, progress=False) if batch.embedding_texts else \
        np.zeros((0, encoder.dim), dtype=np.float32)
    return PartitionResult(position, batch, vectors, failures, _worker_name(), _loads["count"], encoder.fingerprint())


def _worker_encoder(config: dict[str, Any], threads: int | None) -> Any:
    key = json.dumps(config, sort_keys=True, default=str)
    encoder = _encoders.get(key)
    if encoder is None:
        from ..encoding.dual_encoder import DualEncoder, EncoderConfig

        if threads:
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:  # an ONNX-only worker: threads come from the config
                pass
        encoder = _encoders[key] = DualEncoder(EncoderConfig.from_dict(config))
        _loads["count"] += 1
    return encoder


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid-{os.getpid()}"


def concatenate(parts: Sequence[PreparedBatch]) -> PreparedBatch:
    """One batch from several, in order (an empty batch for none)."""
    sparse = any(p.term_lists is not None for p in parts)
    return PreparedBatch(
        documents=[d for p in parts for d in p.documents],
        chunk_lists=[c for p in parts for c in p.chunk_lists],
        embedding_texts=[t for p in parts for t in p.embedding_texts],
        term_lists=[t for p in parts for t in (p.term_lists or [])] if sparse else None,
        algorithms=list(dict.fromkeys(a for p in parts for a in p.algorithms)),
    )


# ------------------------------------------------------------------------------------------------ driver side
def parse_address(address: str) -> tuple[str, Any]:
    """``("local", n_workers)`` or ``("remote", "tcp://host:port")``; anything else is a clear error."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidInputError("--dask needs local:N (N worker processes here) or tcp://scheduler:8786")
    address = address.strip()
    match = re.fullmatch(r"local(?::(\d+))?", address)
    if match:
        workers = int(match.group(1) or os.cpu_count() or 1)
        if workers < 1:
            raise InvalidInputError(f"--dask {address}: the number of local workers must be at least 1")
        return "local", workers
    if re.fullmatch(r"(tcp|tls|ws|wss)://[^\s/]+:\d+", address):
        return "remote", address
    raise InvalidInputError(f"--dask {address!r}: use local:N (N worker processes here) or tcp://scheduler:8786")


def connect(address: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[Any, Any, int]:
    """(client, cluster or None, workers) for ``address``; a scheduler that does not answer is a clear error."""
    kind, value = parse_address(address)
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise MissingDependencyError("--dask needs dask.distributed: pip install 'deepseek-rag[dask]'") from exc
    if kind == "local":
        cluster = LocalCluster(n_workers=value, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        return Client(cluster, timeout=timeout), cluster, value
    try:
        client = Client(value, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise DaskUnavailableError(
            f"no Dask scheduler answers at {value} within {timeout:g}s ({exc}); start one (`dask scheduler`, then "
            "`dask worker ADDRESS` on each machine) or use --dask local:N"
        ) from None
    workers = len(client.scheduler_info().get("workers", {}))
    if workers == 0:
        client.close()
        raise DaskUnavailableError(f"the Dask scheduler at {value} has no workers; start some with `dask worker {value}`")
    return client, None, workers


def results_of(future: Any, results: dict[int, PartitionResult], partitions: int) -> None:
    """Store one finished partition in ``results``; a partition the cluster gave up on is a clear error."""
    from distributed import KilledWorker

    try:
        result = future.result()
    except KilledWorker as exc:
        raise PartitionLostError(
            f"the Dask cluster gave up on a partition ({len(results)} of {partitions} done): the workers running it "
            f"died more often than the scheduler allows ({exc}); nothing was written — check the workers' memory "
            "and logs, raise distributed.scheduler.allowed-failures, or run again"
        ) from None
    results[result.position] = result


def split(documents: Sequence[Document], partitions: int) -> list[list[Document]]:
    """``documents`` in ``partitions`` consecutive runs of near-equal size (none empty)."""
    partitions = max(1, min(partitions, len(documents)))
    bounds = np.linspace(0, len(documents), partitions + 1).round().astype(int)
    return [list(documents[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def prepare_on_dask(
    documents: Sequence[Document], encoder: Any, settings: Any, address: str, *, partitions: int | None = None,
    progress: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
) -> DistributedBatch:
    """Chunk, analyse and encode ``documents`` on the Dask cluster at ``address`` (see the module docstring)."""
    from ..encoding.fingerprint import check_fingerprint

    documents = check_batch(documents, text=False)  # types and unique ids before anything is sent
    client, cluster, workers = connect(address, timeout)
    try:
        runs = split(documents, partitions or workers * PARTITIONS_PER_WORKER)
        threads = max(1, (os.cpu_count() or 1) // workers) if cluster is not None else None
        config, settings_dict = encoder.config.to_dict(), settings.to_dict()
        futures = [client.submit(prepare_partition, i, run, config, settings_dict, threads, pure=False)
                   for i, run in enumerate(runs)]
        from distributed import as_completed

        results: dict[int, PartitionResult] = {}
        show = progress if progress is not None else logger.isEnabledFor(logging.INFO)
        with tqdm(total=len(futures), desc="partitions", unit="partition", disable=not show) as bar:
            for future in as_completed(futures):
                results_of(future, results, len(runs))
                bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [results[i] for i in range(len(runs))]
    for result in ordered:
        check_fingerprint(encoder.fingerprint(), result.fingerprint, f"the Dask worker {result.worker}")
    failures = [f for r in ordered for f in r.failures]
    for doc_id, reason in failures:
        logger.warning("document %r was not indexed: %s", doc_id, reason)
    vectors = [r.vectors for r in ordered if len(r.vectors)]
    return DistributedBatch(
        batch=concatenate([r.batch for r in ordered]),
        vectors=np.vstack(vectors) if vectors else np.zeros((0, encoder.dim), dtype=np.float32),
        failures=failures, partitions=len(runs), workers={r.worker: r.encoder_loads for r in ordered},
    )
