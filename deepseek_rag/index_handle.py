"""IndexHandle: a long-lived reader of an index directory that moves to each new version without failing a search.

A server holds one handle per index. Every search runs on the version that was current when it started
(``reading()`` counts it in flight); :meth:`IndexHandle.refresh` — called by hand or by the optional watcher
thread — opens the newly published version, sharing every segment the two have in common (so only the new
segments are opened), and swaps it in with one assignment. The old version's own segments are closed once
its last search has finished. A version that cannot be opened (damaged, or built with another encoder) is
refused with the error and the current one keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .encoding.dual_encoder import DualEncoder
from .index_files import open_index
from .storage.layout import CURRENT_NAME, read_current
from .storage.snapshot import Snapshot

logger = logging.getLogger(__name__)


@dataclass
class _Live:
    snapshot: Snapshot
    in_flight: int = 0
    retired: bool = False
    released: bool = False


class IndexHandle:
    """The current version of an index directory, swapped when a newer one is published.

    >>> handle = IndexHandle("contracts.idx", watch=1.0)     # checks CURRENT every second
    >>> retriever = handle.as_retriever(top_k=5)               # every retrieve uses the newest version
    >>> handle.close()
    """

    def __init__(
        self,
        path: str | Path,
        encoder: DualEncoder | None = None,
        *,
        watch: float | None = None,
        encoder_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.encoder, self.settings, snapshot = open_index(self.path, encoder, encoder_overrides)
        for state in snapshot.states:  # a served index answers its first filtered queries at full speed
            warm_filter_columns(state.segment.store, self.settings.filter_fields)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refs: dict[int, int] = {}
        self._current = self._adopt(snapshot)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.last_error: Exception | None = None
        if watch is not None:
            if watch <= 0:
                raise ValueError(f"watch={watch!r} must be a number of seconds > 0 (or None for no watcher)")
            self._watcher = threading.Thread(target=self._watch, args=(float(watch),), name="index-watcher", daemon=True)
            self._watcher.start()

    # ------------------------------------------------------------------------------------ reading
    @contextlib.contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """The snapshot one search runs on; its version stays open until the search ends."""
        with self._lock:
            live = self._current
            live.in_flight += 1
        try:
            yield live.snapshot
        finally:
            with self._lock:
                live.in_flight -= 1
                if live.retired and live.in_flight == 0:
                    self._release(live)

    def snapshot(self) -> Snapshot:
        """The current snapshot (for reads that do not need in-flight accounting)."""
        return self._current.snapshot

    @property
    def version(self) -> int | None:
        return self._current.snapshot.version

    @property
    def has_sparse(self) -> bool:
        return self._current.snapshot.has_sparse

    @property
    def has_dense(self) -> bool:
        """False for a lexical-only index (searched in sparse mode only)."""
        return self._current.snapshot.dense

    @property
    def in_flight(self) -> int:
        """Searches running now, on every version still open."""
        with self._lock:
            return self._current.in_flight

    def as_retriever(self, **options: Any):  # -> Retriever
        """A :class:`~deepseek_rag.retrieval.retriever.Retriever` that always searches the current version."""
        from .retrieval.retriever import Retriever

        return Retriever(self, **options)

    # ------------------------------------------------------------------------------------ swapping
    def refresh(self) -> bool:
        """Move to the newest published version; True if it moved. A version that cannot be opened raises
        (an :class:`~deepseek_rag.errors.IndexFormatError` or ``EncoderMismatchError``) and nothing changes."""
        with self._refresh_lock:
            current = self._current.snapshot
            if read_current(self.path) == current.version:
                return False
            reuse = {s.segment.name: s.segment for s in current.states}
            _, settings, snapshot = open_index(self.path, self.encoder, None, reuse=reuse)
            for state in snapshot.states:  # before the swap, so the first filtered queries do not pay for it
                if state.segment.name not in reuse:
                    warm_filter_columns(state.segment.store, settings.filter_fields)
            with self._lock:
                old = self._current
                self._current = self._adopt(snapshot)
                self.settings = settings
                old.retired = True
                if old.in_flight == 0:
                    self._release(old)
            logger.info("%s: now serving version %s (was %s)", self.path, snapshot.version, current.version)
            return True

    def _adopt(self, snapshot: Snapshot) -> _Live:
        for state in snapshot.states:
            key = id(state.segment)
            self._refs[key] = self._refs.get(key, 0) + 1
        return _Live(snapshot)

    def _release(self, live: _Live) -> None:
        """Drop a retired version's hold on its segments, closing those no open version uses (under _lock)."""
        if live.released:
            return
        live.released = True
        for state in live.snapshot.states:
            key = id(state.segment)
            self._refs[key] -= 1
            if self._refs[key] == 0:
                del self._refs[key]
                state.segment.close()

    def _watch(self, interval: float) -> None:
        seen = None
        while not self._stop.wait(interval):
            try:
                stat = os.stat(self.path / CURRENT_NAME)
                signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
                if signature != seen:
                    self.refresh()
                    seen = signature
                    self.last_error = None
            except Exception as exc:  # keep serving the current version; say why once per distinct error
                if repr(exc) != repr(self.last_error):
                    logger.warning("%s: staying on version %s: %s", self.path, self.version, exc)
                self.last_error = exc

    def close(self) -> None:
        """Stop the watcher and close the current version (after its searches end)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            live = self._current
            live.retired = True
            if live.in_flight == 0:
                self._release(live)

    def __enter__(self) -> IndexHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_filter_columns(store: Any, keys: Any) -> None:
    """Load a new segment's in-memory filter columns for the declared ``filter_fields`` (chunk stores that have
    them); a failure only costs the first filtered query the load, never the swap."""
    warm = getattr(store, "warm_filter_columns", None)
    if warm is None or not keys:
        return
    try:
        warm(list(keys))
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation
        logger.warning("could not pre-load filter columns %s: %s", list(keys), exc)
