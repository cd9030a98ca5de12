"""Re-ranking codes for a two-level index: finer codes of every vector, kept in a file beside the index and
memory-mapped, so RAM holds only the compact first-pass codes.

A spec ending in ``,Refine(SQ8)`` (or ``,RFlat`` = ``,Refine(Flat)``) makes :class:`FaissVectorStore` search its
compact index (fast-scan 4-bit PQ over IVF, say) for ``k × k_factor`` candidates, then re-score them with
the vectors these codes decode to — as faiss's ``IndexRefine`` does, and Milvus's "IVF + refine". faiss's own
``IndexRefine`` cannot be used: it numbers vectors itself (no caller ids, no ``remove_ids``) and keeps every
code in RAM.

Row ``i`` holds the code of the ``i``-th smallest id the store holds, so an id's row is a binary search in
the store's sorted ids and no id is stored twice. The file (``<index>.refine``) is::

    b"DSRAGRF1" | header length (u64 LE) | JSON header | trained codec (faiss serialize_index)
    | padding to 4 KiB | codes (count × code_size bytes, row-major)

The header names the codec and the format version, counts the rows and carries a digest of the ids the
rows belong to, so a refine file that does not match its index is a clear error, never wrong scores. Pages
are read on demand (``MADV_RANDOM``: no read-ahead), from a read-only mapping, so a read-only mount works.
This module does no searching; it encodes, stores and decodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
from pathlib import Path

import faiss
import numpy as np

from ..errors import IndexFormatError, IndexSpecError
from ..storage.layout import fsync_path

logger = logging.getLogger(__name__)

REFINE_SUFFIX = ".refine"
"""The codes of ``vectors.faiss`` live in ``vectors.refine`` (same stem)."""

FORMAT_VERSION = 1
_MAGIC = b"DSRAGRF1"
_ALIGN = 4096


def refine_path(index_path: str | os.PathLike[str]) -> Path:
    """Where the re-ranking codes of the index file ``index_path`` live."""
    return Path(index_path).with_suffix(REFINE_SUFFIX)


def ids_digest(ids: np.ndarray) -> str:
    """A digest of the sorted ids a file's rows belong to."""
    return hashlib.blake2b(np.ascontiguousarray(ids, dtype="<i8").tobytes(), digest_size=16).hexdigest()


class RefineCodes:
    """The trained codec (a faiss index used only for ``sa_encode`` / ``sa_decode``) and one code per id.

    Immutable: ``inserted`` and ``without`` return new objects, so a memory-mapped file is never written.
    """

    def __init__(self, codec_spec: str, codec: faiss.Index, codes: np.ndarray, source: str | None = None) -> None:
        self.codec_spec = codec_spec
        self.codec = codec
        self.codes = codes
        self.source = source  # the file the codes are mapped from, None when they are in memory

    @classmethod
    def new(cls, codec_spec: str, dim: int, spec: str) -> RefineCodes:
        """An untrained codec named by ``codec_spec`` ("Flat", "SQ8", "SQfp16", ...); ``spec`` is for errors."""
        try:
            codec = faiss.index_factory(dim, codec_spec, faiss.METRIC_INNER_PRODUCT)
            code_size = int(codec.sa_code_size())
        except RuntimeError as exc:
            raise IndexSpecError(
                f"index spec {spec!r}: Refine({codec_spec}) is not a codec faiss can encode and decode "
                "(use Refine(Flat), Refine(SQfp16) or Refine(SQ8))"
            ) from exc
        if faiss.try_extract_index_ivf(codec) is not None:
            raise IndexSpecError(f"index spec {spec!r}: Refine({codec_spec}) must be a codec, not an IVF index")
        return cls(codec_spec, codec, np.empty((0, code_size), dtype=np.uint8))

    # ------------------------------------------------------------------------------- codes
    @property
    def is_trained(self) -> bool:
        return bool(self.codec.is_trained)

    @property
    def code_size(self) -> int:
        return int(self.codes.shape[1])

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def train(self, vectors: np.ndarray) -> None:
        if not self.codec.is_trained:
            self.codec.train(vectors)

    def empty_like(self) -> RefineCodes:
        return RefineCodes(self.codec_spec, self.codec, self.codes[:0].copy())

    def inserted(self, ids: np.ndarray, new_ids: np.ndarray, new_codes: np.ndarray) -> RefineCodes:
        """Codes for the sorted union of ``ids`` (this object's rows) and ``new_ids`` (disjoint from them)."""
        assert len(ids) == len(self) and len(new_ids) == len(new_codes), (len(ids), len(self), len(new_ids))
        order = np.argsort(np.concatenate([ids, new_ids]), kind="stable")
        return RefineCodes(self.codec_spec, self.codec, np.concatenate([self.codes, new_codes])[order])

    def encoded(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as codes, (n, code_size) uint8."""
        return self.codec.sa_encode(vectors).reshape(len(vectors), -1)

    def without(self, keep: np.ndarray) -> RefineCodes:
        """Only the rows where the boolean mask ``keep`` is set."""
        return RefineCodes(self.codec_spec, self.codec, self.codes[keep])

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (ascending rows read the mapped file front to back)."""
        if not len(rows):
            return np.zeros((0, self.codec.d), dtype=np.float32)
        return self.codec.sa_decode(np.ascontiguousarray(self.codes[rows]))

    def ram_nbytes(self) -> int:
        """Bytes held in process memory: the codec, plus the codes unless they are memory-mapped."""
        return int(faiss.serialize_index(self.codec).nbytes) + (0 if self.source else int(self.codes.nbytes))

    # ------------------------------------------------------------------------------- files
    def _layout(self, ids: np.ndarray) -> tuple[bytes, np.ndarray, int]:
        """(magic + header, serialised codec, offset of the codes) of the file for the sorted ``ids``."""
        codec = faiss.serialize_index(self.codec)
        header = json.dumps({"format_version": FORMAT_VERSION, "codec": self.codec_spec, "dim": int(self.codec.d),
                             "code_size": self.code_size, "count": len(self), "ids_digest": ids_digest(ids),
                             "codec_bytes": int(codec.nbytes)}).encode()
        head = _MAGIC + struct.pack("<Q", len(header)) + header
        return head, codec, -(-(len(head) + int(codec.nbytes)) // _ALIGN) * _ALIGN

    def file_nbytes(self) -> int:
        """Size of the file :meth:`save` writes."""
        return self._layout(np.empty(0, dtype=np.int64))[2] + int(self.codes.nbytes)

    def save(self, path: str | os.PathLike[str], ids: np.ndarray) -> None:
        """Write the codes of the sorted ``ids`` to ``path`` atomically (temporary file, fsync, rename)."""
        path = Path(path)
        head, codec, offset = self._layout(ids)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                handle.write(head)
                handle.write(codec.tobytes())
                handle.write(b"\0" * (offset - len(head) - int(codec.nbytes)))
                if self.codes.size:
                    handle.write(memoryview(np.ascontiguousarray(self.codes).reshape(-1)))
            fsync_path(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], ids: np.ndarray, *, mmap_codes: bool = True) -> RefineCodes:
        """Read ``path`` for an index holding the sorted ``ids``; with ``mmap_codes`` the codes stay on disk."""
        path = Path(path)
        damaged = f"{path} (re-ranking codes) is damaged or belongs to another index"
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(_MAGIC) + 8)
                if len(head) < len(_MAGIC) + 8 or head[: len(_MAGIC)] != _MAGIC:
                    raise IndexFormatError(f"{damaged}: it is not a deepseek-rag refine file; rebuild the index")
                header = json.loads(handle.read(struct.unpack("<Q", head[len(_MAGIC):])[0]))
                if header.get("format_version") != FORMAT_VERSION:
                    raise IndexFormatError(
                        f"{path} has refine format_version {header.get('format_version')!r}; this library reads "
                        f"{FORMAT_VERSION}. Upgrade deepseek-rag or rebuild the index."
                    )
                codec = faiss.deserialize_index(np.frombuffer(handle.read(header["codec_bytes"]), dtype=np.uint8))
                offset = -(-handle.tell() // _ALIGN) * _ALIGN
                count, code_size = int(header["count"]), int(header["code_size"])
                size = os.fstat(handle.fileno()).st_size
                if size != offset + count * code_size or count != len(ids) or header["ids_digest"] != ids_digest(ids):
                    raise IndexFormatError(f"{damaged} ({count} rows, {size} bytes for {len(ids)} ids); rebuild the index")
                if mmap_codes and count:
                    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
                        mapped.madvise(mmap.MADV_RANDOM)  # a query reads scattered rows: no read-ahead
                    codes = np.frombuffer(mapped, dtype=np.uint8, count=count * code_size, offset=offset)
                    return cls(header["codec"], codec, codes.reshape(count, code_size), str(path))
                handle.seek(offset)
                codes = np.frombuffer(handle.read(count * code_size), dtype=np.uint8).reshape(count, code_size)
                return cls(header["codec"], codec, codes.copy())
        except IndexFormatError:
            raise
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexFormatError(f"{damaged} ({exc}); rebuild the index") from exc
