"""The writer lock of an index directory: one writer at a time, and the one that waits is told who holds it.

``writer.lock`` is locked with ``flock`` (the kernel drops it when the holder exits, even on ``kill -9``,
so a crashed writer never leaves a stale lock) and holds a line of JSON naming the holder: process id, host,
command line and since when. A second writer — another process, or another object in the same process —
gets an :class:`~deepseek_rag.errors.IndexLockedError` with that line in words, after waiting up to its
timeout. A directory that cannot be written (a read-only mount) is a
:class:`~deepseek_rag.errors.ReadOnlyIndexError`. Readers never touch the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from ..errors import IndexLockedError, ReadOnlyIndexError
from .layout import LOCK_NAME

logger = logging.getLogger(__name__)

_HELD_HERE: dict[str, int] = {}  # lock path -> id() of the WriterLock holding it in this process
_HELD_LOCK = threading.Lock()
_ANONYMOUS_GRACE = 1.0  # seconds to wait for a holder that has not written (or has just cleared) its line


class WriterLock:
    """``with WriterLock(folder).acquire(timeout=5): ...`` — or ``acquire()`` / ``release()`` by hand."""

    def __init__(self, folder: str | Path, purpose: str = "") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 0.0) -> WriterLock:
        """Take the lock, waiting up to ``timeout`` seconds for another holder to let go."""
        if self._fd is not None:
            return self
        key = str(self.path.resolve())
        with _HELD_LOCK:
            other = _HELD_HERE.get(key)
        deadline = time.monotonic() + max(0.0, timeout)
        grace_used = False
        fd = self._open()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        if not grace_used and not self._holder(fd):
                            # The holder has the lock but not yet its line (arriving), or has cleared it (leaving):
                            # a moment more either frees the lock or names the holder.
                            grace_used, deadline = True, time.monotonic() + _ANONYMOUS_GRACE
                            continue
                        raise IndexLockedError(self._held_message(fd, other is not None, timeout)) from None
                    time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:300] or sys.executable, "purpose": self.purpose,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self._fd = fd
        with _HELD_LOCK:
            _HELD_HERE[key] = id(self)
        return self

    def release(self) -> None:
        """Let the next writer in (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with _HELD_LOCK:
            _HELD_HERE.pop(str(self.path.resolve()), None)
        try:
            os.ftruncate(fd, 0)
        except OSError:  # pragma: no cover - the lock goes with the descriptor anyway
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyIndexError(
                    f"the index at {self.path.parent} is read-only ({exc.strerror}); it can be searched but not "
                    "changed: copy it to a writable place to add or delete documents"
                ) from None
            raise

    @staticmethod
    def _holder(fd: int) -> dict:
        """The holder's line, or {} while it is being written or cleared."""
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _held_message(self, fd: int, in_this_process: bool, timeout: float) -> str:
        holder = self._holder(fd)
        waited = f" (waited {timeout:g}s)" if timeout > 0 else ""
        if in_this_process or holder.get("pid") == os.getpid():
            who = "another DocumentIndex in this process (opened for writing, with changes not yet saved)"
            hint = "save or close that one first"
        elif holder:
            doing = f", {holder['purpose']}" if holder.get("purpose") else ""
            who = (f"process {holder.get('pid')} on {holder.get('host')} ({holder.get('command')!r}, "
                   f"since {holder.get('since')}{doing})")
            hint = "wait for it to finish, or pass a longer wait (--wait SECONDS)"
        else:
            who = "another process"
            hint = "wait for it to finish, or pass a longer wait (--wait SECONDS)"
        return f"the index at {self.path.parent} is being written by {who}{waited}; {hint}"
