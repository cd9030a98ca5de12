"""The service's Prometheus metrics (prometheus-client), one registry per app.

Names follow the Prometheus naming guide and text-embeddings-inference / vLLM practice: one prefix, base units,
counters ending in ``_total``, bounded labels only (route templates, never raw paths; arm names; stages), and
time waiting for a batch (``queue``) measured apart from the forward pass (``encode``), the vector and BM25
search (``search``), chunk reads (``fetch``) and the LLM (``generate``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "deepseek_rag_"
STAGES = ("queue", "encode", "search", "fetch", "generate")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)

METRIC_NAMES = (
    "deepseek_rag_requests_total", "deepseek_rag_request_seconds", "deepseek_rag_stage_seconds",
    "deepseek_rag_encode_batch_size", "deepseek_rag_index_documents", "deepseek_rag_index_chunks",
    "deepseek_rag_index_version", "deepseek_rag_inflight_requests", "deepseek_rag_gpu_memory_bytes",
    "deepseek_rag_index_swaps_total", "deepseek_rag_ready",
)
"""Every metric family the app exports (the Grafana dashboard and alert rules may use only these)."""


class ServeMetrics:
    """The metric families of one app; ``render()`` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: nothing here reads them, every scrape would carry them
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}requests", "HTTP requests by route template, status and arm.",
                                ["route", "status", "arm"], registry=r)
        self.request_seconds = Histogram(f"{PREFIX}request_seconds", "Request latency by route template.",
                                         ["route", "arm"], buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Histogram(f"{PREFIX}stage_seconds", "Time per stage of a request.", ["stage", "arm"],
                                       buckets=_STAGE_BUCKETS, registry=r)
        self.encode_batch_size = Histogram(f"{PREFIX}encode_batch_size", "Queries encoded per forward pass.",
                                           ["arm"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.index_documents = Gauge(f"{PREFIX}index_documents", "Documents in the served version.", ["arm"], registry=r)
        self.index_chunks = Gauge(f"{PREFIX}index_chunks", "Chunks in the served version.", ["arm"], registry=r)
        self.index_version = Gauge(f"{PREFIX}index_version", "The served version of the index.", ["arm"], registry=r)
        self.index_swaps = Counter(f"{PREFIX}index_swaps", "Moves to a newly published version.", ["arm"], registry=r)
        self.inflight = Gauge(f"{PREFIX}inflight_requests", "Requests being served now.", registry=r)
        self.ready = Gauge(f"{PREFIX}ready", "1 once every arm's index is loaded and searchable, else 0.", registry=r)
        self.gpu_memory = Gauge(f"{PREFIX}gpu_memory_bytes", "CUDA memory allocated by torch (when CUDA is used).",
                                ["device"], registry=r)

    def observe_index(self, arm: str, version: int | None, documents: int, chunks: int) -> None:
        self.index_version.labels(arm).set(version or 0)
        self.index_documents.labels(arm).set(documents)
        self.index_chunks.labels(arm).set(chunks)

    def stage(self, stage: str, seconds: float, arm: str) -> None:
        self.stage_seconds.labels(stage, arm).observe(seconds)

    def render(self) -> bytes:
        self._observe_gpu()
        return generate_latest(self.registry)

    def _observe_gpu(self) -> None:
        import sys

        torch = sys.modules.get("torch")  # never import torch just for a gauge
        if torch is not None and torch.cuda.is_available():
            for device in range(torch.cuda.device_count()):
                self.gpu_memory.labels(str(device)).set(torch.cuda.memory_allocated(device))
