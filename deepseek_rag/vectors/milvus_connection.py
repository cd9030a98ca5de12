"""Where a Milvus backend lives and how this process talks to it: URIs, clients, time limits, clear errors.

Two kinds of target, as pymilvus addresses them:

* ``milvus:///path/to/file.db`` (or a bare path ending in ``.db``): milvus-lite embedded in this process. One
  process may open a ``.db`` at a time; several processes share one through ``milvus-lite server --data-dir D``.
* ``http://host:19530`` (``https://``, or ``tcp://`` read as ``http://``): a Milvus server, or ``milvus-lite
  server``.

pymilvus is imported here, lazily, and only here and in the modules using :func:`milvus_client`; a missing one
is a :class:`~deepseek_rag.errors.MissingDependencyError` naming the ``milvus`` extra. Clients are cached per
URI, so every segment of an index shares one connection. This module knows nothing of collections.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DeepSeekRAGError, InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a connection attempt or one call waits before it is a clear error."""

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


class MilvusUnavailableError(DeepSeekRAGError, ConnectionError):
    """The Milvus target cannot be reached, or refuses this process (a ``.db`` another process holds)."""


def is_milvus_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus target (``milvus://...``, ``http(s)://``, ``tcp://``, or a ``.db`` path)."""
    return isinstance(uri, str) and (uri.startswith(("milvus://", "http://", "https://", "tcp://")) or uri.endswith(".db"))


def normalize_uri(uri: str) -> str:
    """The canonical form recorded in an index: ``milvus:///abs/path.db`` or ``http(s)://host:port``."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"Milvus URI {uri!r} is empty; give milvus:///path/file.db or http://host:19530")
    uri = uri.strip()
    if uri.startswith("tcp://"):
        uri = "http://" + uri[len("tcp://"):]
    if uri.startswith(("http://", "https://")):
        rest = uri.split("://", 1)[1]
        if not rest or rest.startswith("/"):
            raise InvalidInputError(f"Milvus URI {uri!r} names no host; give http://host:19530")
        return uri.rstrip("/")
    path = uri[len("milvus://"):] if uri.startswith("milvus://") else uri
    if not path.endswith(".db"):
        raise InvalidInputError(
            f"Milvus URI {uri!r}: an embedded milvus-lite file must end in .db (milvus:///path/to/file.db); "
            "a server is http://host:19530"
        )
    return "milvus://" + str(Path(path).expanduser().absolute())


def is_embedded(uri: str) -> bool:
    return normalize_uri(uri).startswith("milvus://")


def client_uri(uri: str) -> str:
    """What pymilvus takes: the ``.db`` path for milvus-lite, the http(s) address for a server."""
    uri = normalize_uri(uri)
    return uri[len("milvus://"):] if uri.startswith("milvus://") else uri


def import_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise MissingDependencyError(
            "the Milvus backend needs pymilvus (and milvus-lite for milvus:///file.db): "
            "pip install 'deepseek-rag[milvus]'"
        ) from exc
    return pymilvus


def milvus_client(uri: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """A connected ``MilvusClient`` for ``uri`` (one per URI in this process), or a clear error within ``timeout``."""
    key = normalize_uri(uri)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        pymilvus = import_pymilvus()
        target = client_uri(key)
        if key.startswith("milvus://"):
            _check_lite_file(Path(target))
        try:
            with quiet_pymilvus():
                client = pymilvus.MilvusClient(uri=target, timeout=timeout)
                client.list_collections(timeout=timeout)
        except Exception as exc:  # pymilvus raises MilvusException, grpc errors, or its own for lite
            raise unavailable(key, exc, timeout) from None
        _clients[key] = client
        return client


def forget_client(uri: str) -> None:
    """Drop the cached client of ``uri`` (tests that stop a server; a later call reconnects)."""
    with _clients_lock:
        client = _clients.pop(normalize_uri(uri), None)
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()


def unavailable(uri: str, exc: BaseException, timeout: float) -> MilvusUnavailableError:
    """The error for a target that did not answer, naming it and what to do."""
    reason = str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if uri.startswith("milvus://"):
        path = uri[len("milvus://"):]
        if "lock" in reason.lower() or "local milvus" in reason.lower() or "start" in reason.lower():
            return MilvusUnavailableError(
                f"cannot open the milvus-lite file {path} ({reason}): embedded milvus-lite lets one process open a .db "
                f"at a time. To share it, run `milvus-lite server --data-dir {path} --port 19530` and use "
                "http://127.0.0.1:19530 instead"
            )
        return MilvusUnavailableError(f"cannot open the milvus-lite file {path}: {reason}")
    return MilvusUnavailableError(
        f"cannot reach Milvus at {uri} within {timeout:g}s ({reason}); start the server (a Milvus server, or "
        "`milvus-lite server --data-dir DIR --port PORT`) or check the URI"
    )


def _check_lite_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InvalidInputError(
            f"{path} exists and is not a milvus-lite data directory (milvus-lite 3 keeps a folder at the .db path); "
            "choose another path"
        )
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot create the milvus-lite file {path}: {path.parent} is not a directory")
    try:
        import milvus_lite  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"milvus:///{path} is an embedded milvus-lite file and milvus-lite is not installed: "
            "pip install 'deepseek-rag[milvus]'"
        ) from exc


@contextlib.contextmanager
def quiet_pymilvus() -> Iterator[None]:
    """Silence pymilvus's own error log for the duration of a call whose failure this package reports itself."""
    loggers = [logging.getLogger(name) for name in ("pymilvus", "milvus_lite", "grpc._server")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def milvus_reason(exc: BaseException) -> str:
    """The human part of a pymilvus error ("index_type='IVF_PQ' is reserved ...")."""
    message = getattr(exc, "message", None) or str(exc)
    return str(message).strip().splitlines()[0][:400] if str(message).strip() else type(exc).__name__


def call_error(exc: BaseException, what: str, uri: str, collection: str, timeout: float) -> Exception | None:
    """The clear error a failed call ``what`` on ``collection`` becomes (None: not a Milvus error; raise it as it is)."""
    grpc_code = _grpc_code(exc)  # pymilvus lets some gRPC errors through unwrapped (a deadline mid-search)
    if grpc_code in ("DEADLINE_EXCEEDED", "UNAVAILABLE"):
        return MilvusUnavailableError(f"Milvus at {uri} did not answer {what} on {collection!r} within "
                                      f"{timeout:g}s ({grpc_code.lower()}); raise vector_store.timeout "
                                      "or check the server's load")
    if grpc_code is not None:
        return InvalidInputError(f"Milvus {what} on collection {collection!r} at {uri} failed: "
                                 f"{grpc_code.lower()}: {exc.details()}")
    if type(exc).__name__ in ("MilvusException", "MilvusUnavailableException", "RpcError") and _is_unreachable(exc):
        return MilvusUnavailableError(f"Milvus at {uri} did not answer {what} on {collection!r} within "
                                      f"{timeout:g}s ({milvus_reason(exc)})")
    if type(exc).__name__.endswith("Exception") and exc.__class__.__module__.startswith("pymilvus"):
        return InvalidInputError(f"Milvus {what} on collection {collection!r} at {uri} failed: "
                                 f"{milvus_reason(exc)}")
    return None


def _grpc_code(exc: BaseException) -> str | None:
    """The status name of a raw gRPC error ("DEADLINE_EXCEEDED"), or None for any other exception."""
    try:
        import grpc
    except ImportError:
        return None
    if not isinstance(exc, grpc.RpcError) or not callable(getattr(exc, "code", None)):
        return None
    code = exc.code()
    return getattr(code, "name", str(code))


def _is_unreachable(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("unavailable", "deadline", "connect", "timeout", "timed out"))
