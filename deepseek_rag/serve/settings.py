"""``ServeSettings``: what ``deepseek-rag serve`` and ``create_app`` are told, checked before anything starts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..config import Config
from ..errors import InvalidInputError
from .arms import ExperimentSettings

MIB = 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeSettings(Config):
    """How the service runs; every field has the default a user would pick."""

    index: str = field(default="", metadata={"help": "Index directory to serve (created empty if it does not exist)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer token that writes (and reads) need."})
    read_key: str | None = field(default=None, metadata={"help": "Bearer token that reads need (the API key works too)."})
    allow_unauthenticated_writes: bool = field(
        default=False, metadata={"help": "Accept writes without a key; only on a loopback address."}
    )
    max_request_bytes: int = field(default=32 * MIB, metadata={"help": "Larger request bodies get 413."})
    timeout_s: float = field(default=30.0, metadata={"help": "A request with no response by then gets 504."})
    batch_window_ms: float = field(
        default=2.0, metadata={"help": "Queries arriving within this window are encoded in one forward pass (0: off)."}
    )
    max_batch: int = field(default=32, metadata={"help": "Most queries encoded in one forward pass."})
    watch_s: float = field(default=0.5, metadata={"help": "How often to look for versions published by other writers."})
    max_top_k: int = field(default=1000, metadata={"help": "Largest top_k a request may ask for."})
    max_documents_per_request: int = field(default=1000, metadata={"help": "Largest upsert batch."})
    model: str | None = field(default=None, metadata={"help": "Encoder for a new index (default: bundled MiniLM)."})
    lock_wait_s: float = field(default=30.0, metadata={"help": "How long a write waits for another writer."})
    mlflow_model: str | None = field(
        default=None, metadata={"help": "Register a promoted arm's retriever as a version of this MLflow model."}
    )
    experiment: ExperimentSettings | None = field(
        default=None, metadata={"help": "A/B arms (from serve.toml); without it the one index is the arm 'default'."}
    )

    def __post_init__(self) -> None:
        if isinstance(self.experiment, dict):
            self.experiment = ExperimentSettings.from_dict(self.experiment)
        if self.experiment is not None and not self.index:
            self.index = next(a.index for a in self.experiment.arms if a.default)
        if not isinstance(self.index, str) or not self.index:
            raise InvalidInputError("ServeSettings.index must name the index directory to serve (or give arms)")
        if not 0 < int(self.port) < 65536:
            raise InvalidInputError(f"ServeSettings.port={self.port!r} must be between 1 and 65535")
        if self.allow_unauthenticated_writes and not is_loopback(self.host):
            raise InvalidInputError(
                f"--allow-unauthenticated-writes is only allowed on a loopback address, not {self.host!r}; "
                "set --api-key (or DEEPSEEK_RAG_API_KEY) to accept writes from the network"
            )
        for name in ("max_request_bytes", "max_batch", "max_top_k", "max_documents_per_request"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"ServeSettings.{name}={getattr(self, name)!r} must be at least 1")
        for name in ("timeout_s", "watch_s"):
            if float(getattr(self, name)) <= 0:
                raise InvalidInputError(f"ServeSettings.{name}={getattr(self, name)!r} must be > 0 seconds")
        if float(self.batch_window_ms) < 0:
            raise InvalidInputError(f"ServeSettings.batch_window_ms={self.batch_window_ms!r} must be >= 0 (0: off)")
        for name in ("api_key", "read_key"):
            value = getattr(self, name)
            if value is not None and (not value or any(c.isspace() for c in value)):
                raise InvalidInputError(f"ServeSettings.{name} must be a non-empty token without spaces")

    def __repr__(self) -> str:  # never print the keys
        hidden = {k: ("***" if k in ("api_key", "read_key") and v else v) for k, v in self.to_dict().items()}
        return f"ServeSettings({hidden})"
