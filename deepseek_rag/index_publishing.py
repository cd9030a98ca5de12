"""The directory side of :class:`~deepseek_rag.document_index.DocumentIndex`: the writer lock, publishing versions
(``save``, and the merges the policy asks for), opening and refreshing, and where a Milvus index's segments go.

:class:`Publishing` holds these methods; the in-memory state they publish (snapshots, settings, the encoder) and
the writes that change it are ``document_index.py``'s. The files themselves are written by ``storage/`` (a version
is published atomically, see ``storage/directory.py``) and read by ``index_files.py``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .encoding.dual_encoder import DualEncoder
from .errors import InvalidInputError
from .index_files import next_segment_number, open_index, portable_encoder_config
from .storage.directory import publish_snapshot
from .storage.layout import CURRENT_NAME, check_save_target, read_current
from .storage.lock import WriterLock
from .storage.merging import SegmentSize, plan_merges
from .storage.versions import collect_garbage

if TYPE_CHECKING:
    from .document_index import DocumentIndex

logger = logging.getLogger(__name__)


class Publishing:
    """Writer lock, save, load and refresh for :class:`~deepseek_rag.document_index.DocumentIndex`."""

    def lock_for_writing(self, timeout: float | None = None) -> None:
        """Take this directory's writer lock now (before slow work, as the CLI does); a no-op in memory.

        If another writer published since this index was opened, it moves to that version first.
        """
        self._check_writable()
        with self._mutex:
            if self.path is None or self._writer_lock is not None:
                return
            wait = self.lock_timeout if timeout is None else timeout
            lock = WriterLock(self.path, "changes not yet saved, or being saved").acquire(wait)
            try:
                if (self.path / CURRENT_NAME).exists():
                    current = read_current(self.path)
                    collect_garbage(self.path, current, self.settings.versions.keep_versions)
                    if not self._changed and current != self._snapshot.version:
                        self._reopen()
            except BaseException:
                lock.release()
                raise
            self._writer_lock = lock

    def _release_lock(self) -> None:
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Publish this index as a new version of a directory: atomically, whatever happens, readers see the old
        version or the new one. Without ``path``: the directory it was opened from (or last saved to)."""
        if path is None and self.path is None:
            raise InvalidInputError("this index has no directory yet; pass save(path)")
        target = Path(path) if path is not None else self.path
        with self._mutex:
            if self.path is not None and target.resolve() == self.path.resolve():
                if self._changed or not (target / CURRENT_NAME).exists():
                    self._publish_in_place()
            else:
                self._save_as(target, overwrite)
        return target

    def _manifest_parts(self) -> dict[str, Any]:
        return {"encoder": {"config": portable_encoder_config(self.encoder), "fingerprint": self.encoder.fingerprint()},
                "settings": self.settings.to_dict()}

    def _publish_in_place(self) -> None:
        self.lock_for_writing()
        try:
            legacy = not (self.path / CURRENT_NAME).exists()
            _, snapshot, _ = publish_snapshot(self.path, self._snapshot, rewrite_all=legacy, **self._manifest_parts())
            self._snapshot, self._changed = snapshot, False
            collect_garbage(self.path, snapshot.version, self.settings.versions.keep_versions)
            self._merge_segments()
        finally:
            if not self._changed:
                self._release_lock()

    def _merge_segments(self) -> None:
        """Publish merged segments when the merge policy says so (see ``storage/merging.py``)."""
        states = self._snapshot.states
        groups = plan_merges([SegmentSize(s.segment.chunks, len(s.deleted)) for s in states], self.settings.versions)
        for names in [{states[p].segment.name for p in group} for group in groups]:
            _, self._snapshot, _ = publish_snapshot(self.path, self._snapshot, rewrite=names, **self._manifest_parts())
            collect_garbage(self.path, self._snapshot.version, self.settings.versions.keep_versions)
            logger.info("merged segments %s into version %d", ", ".join(sorted(names)), self._snapshot.version)

    def _milvus_target(self, folder: Path | None):  # -> MilvusTarget | None
        """Where this index's segments go on Milvus when saved into ``folder`` (None: the FAISS backend). Saving
        again into a Milvus index's own directory keeps its index id, so its collections stay its own."""
        store = self.settings.vector_store
        if not store.is_milvus:
            return None
        from .storage.milvus_segments import MilvusTarget
        from .vectors.milvus_collections import collection_name_for

        collection = store.collection or (collection_name_for(folder) if folder is not None else "unsaved")
        index_id = ""
        if folder is not None and (folder / CURRENT_NAME).is_file():
            from .storage.versions import read_record

            with contextlib.suppress(Exception):  # an unreadable old version: a new id
                vectors = read_record(folder, read_current(folder)).get("vectors") or {}
                if vectors.get("backend") == "milvus":
                    index_id = vectors.get("index_id") or ""
        import uuid

        return MilvusTarget(store.uri, collection, self.settings.index_spec, index_id or uuid.uuid4().hex, store.timeout)

    def check_vector_store(self, path: str | Path):  # -> MilvusTarget | None
        """Before slow work: for the Milvus backend, check that saving into ``path`` can work — the server answers,
        builds the index type, and the collection is free or this index's own (a no-op on FAISS)."""
        folder = Path(path).absolute()
        if self._checked_target is not None and self._checked_target[0] == folder:
            return self._checked_target[1]
        target = self._milvus_target(folder)
        if target is not None:
            from .storage.milvus_segments import check_target

            check_target(target, self.encoder.dim, self.encoder.fingerprint())
        self._checked_target = (folder, target)
        return target

    def _save_as(self, target: Path, overwrite: bool) -> None:
        check_save_target(target, overwrite)
        milvus = self.check_vector_store(target)
        target.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(target, "saving a new version").acquire(self.lock_timeout)
        try:
            if (target / CURRENT_NAME).exists():
                collect_garbage(target, read_current(target), self.settings.versions.keep_versions)
            base = self._snapshot.derive(self._snapshot.states, next_segment=next_segment_number(target), milvus=milvus)
            _, snapshot, _ = publish_snapshot(target, base, rewrite_all=True, **self._manifest_parts())
            collect_garbage(target, snapshot.version, self.settings.versions.keep_versions)
        finally:
            lock.release()
        self._release_lock()
        self._snapshot, self.path, self._changed = snapshot, target, False

    @classmethod
    def load(
        cls,
        path: str | Path,
        encoder: DualEncoder | None = None,
        *,
        writable: bool = True,
        encoder_overrides: Mapping[str, Any] | None = None,
        lock_timeout: float = 0.0,
    ) -> DocumentIndex:
        """Open the current version of an index directory; the encoder is rebuilt from the manifest unless one is
        given. An encoder other than the one that built the index is an :class:`EncoderMismatchError`.

        Opening never writes to the directory (a read-only mount works). ``writable=False`` refuses changes;
        with ``writable=True`` (the default) the first change takes the writer lock.
        """
        folder = Path(path)
        encoder, settings, snapshot = open_index(folder, encoder, encoder_overrides)
        return cls(encoder, settings, lock_timeout=lock_timeout, _snapshot=snapshot, _path=folder, _writable=writable)

    def _reopen(self) -> None:
        """Move to the current version of the directory, sharing the segments already open."""
        reuse = {s.segment.name: s.segment for s in self._snapshot.states if s.segment.path is not None}
        _, self.settings, self._snapshot = open_index(self.path, self.encoder, None, reuse=reuse)

    def refresh(self) -> bool:
        """Move to the newest published version of the directory (only without unsaved changes); True if it moved."""
        if self.path is None or not (self.path / CURRENT_NAME).exists():
            return False
        with self._mutex:
            if self._changed or read_current(self.path) == self._snapshot.version:
                return False
            self._reopen()
            return True
