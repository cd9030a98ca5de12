"""The service's one writer: upserts and deletes applied in arrival order, each published as a new version.

Writes run on a single thread, so two requests never interleave; each is published (``DocumentIndex.save``)
before it is answered, and the readers' handle is moved to that version at once. Readers never wait for a
write: they keep answering from the current version until the swap. The writer lock is taken only while a
write runs, so ``deepseek-rag add`` from another process can write in between (the handle's watcher picks its
versions up); a write that finds the lock held waits ``lock_wait_s`` and then answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..document_index import DocumentIndex
from ..documents import Document
from ..index_handle import IndexHandle

logger = logging.getLogger(__name__)


class IndexWriter:
    """Applies writes to one index directory in order and keeps ``handle`` on the newest version."""

    def __init__(self, path: Path, encoder: Any, handle: IndexHandle, *, lock_wait_s: float) -> None:
        self.path = path
        self.handle = handle
        self._index = DocumentIndex.load(path, encoder, lock_timeout=lock_wait_s)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="writer")

    async def upsert(self, documents: list[Document]) -> tuple[int, int | None]:
        """(chunks written, version published)."""
        return await self._run(self._upsert, documents)

    async def delete(self, doc_id: str) -> tuple[int, int | None]:
        """(chunks removed, version published); a missing id raises DocumentNotFoundError."""
        return await self._run(self._delete, doc_id)

    async def _run(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _upsert(self, documents: list[Document]) -> tuple[int, int | None]:
        try:
            chunks = self._index.upsert_documents(documents)
            self._index.save()
        except BaseException:
            self._index.discard_changes()  # drop what did not publish; the directory keeps its last version
            raise
        return chunks, self._published()

    def _delete(self, doc_id: str) -> tuple[int, int | None]:
        try:
            chunks = self._index.delete_documents([doc_id])
            self._index.save()
        except BaseException:
            self._index.discard_changes()
            raise
        return chunks, self._published()

    def _published(self) -> int | None:
        version = self._index.snapshot().version
        try:
            self.handle.refresh()
        except Exception as exc:  # the version is published; readers reach it on the watcher's next look
            logger.warning("published version %s but could not move the readers to it yet: %s", version, exc)
        return version

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._index.close()
