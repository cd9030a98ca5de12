"""Reading an index directory of the first release (format 1) as a one-segment version, without writing to it.

Format 1 kept ``manifest.json``, ``chunks.sqlite`` (whose ``meta`` table holds the committed checksum of
the vectors file), ``vectors.faiss`` and a bm25s ``sparse.npz``. A save wrote ``vectors.faiss.new``,
committed its checksum, then renamed it; a crash between the two left the committed file under the
``.new`` name. Its readers finished that rename themselves; here the matching file is simply read where it
lies, so a reader never writes. The BM25 postings are analysed again from the stored chunk texts (a
first-release ``sparse.npz`` holds precomputed scores, not term counts). The first write to such a directory
publishes a format-2 version and the old files are removed (``versions.collect_garbage``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import IndexFormatError
from ..sparse.bm25 import SparseConfig
from ..vectors.faiss_store import FaissVectorStore
from .chunk_store import ChunkStore
from .layout import MANIFEST_NAME, file_checksum, read_json
from .rebuild import analyse_store
from .segment import Segment
from .versions import check_record

logger = logging.getLogger(__name__)

LEGACY_SEGMENT = "legacy"


def read_legacy_manifest(folder: Path) -> dict[str, Any]:
    """The format-1 manifest, checked like a version record (it has no segments: one is implied)."""
    data = read_json(folder / MANIFEST_NAME, "manifest")
    if isinstance(data, dict):
        data = {**data, "segments": data.get("segments", []), "next_chunk_id": data.get("next_chunk_id", 0),
                "vectors": data.get("vectors", {"backend": "faiss", "spec": data.get("index_spec")})}
    return check_record(data, str(folder / MANIFEST_NAME))


def open_legacy_segment(folder: Path, sparse: SparseConfig | None) -> Segment:
    """The whole first-release directory as one read-only segment."""
    store = ChunkStore.open(folder / "chunks.sqlite")
    try:
        with store._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'vectors_checksum'").fetchone()
        expected = row[0] if row else None
        if expected is None:
            raise IndexFormatError(f"{folder} has no committed vectors: the first save never finished; rebuild the index")
        vectors_path = None
        for candidate in (folder / "vectors.faiss", folder / "vectors.faiss.new"):
            if candidate.is_file() and file_checksum(candidate) == expected:
                vectors_path = candidate
                break
        if vectors_path is None:
            raise IndexFormatError(
                f"{folder / 'vectors.faiss'} does not match chunks.sqlite (damaged or truncated); rebuild the index "
                "with `deepseek-rag index`"
            )
        vectors = FaissVectorStore.open(vectors_path, mmap=True)
        postings = analyse_store(store, sparse) if sparse is not None else None
    except BaseException:
        store.close()
        raise
    segment = Segment(LEGACY_SEGMENT, store, vectors, postings, folder)
    if len(segment.chunk_ids) != segment.chunks:
        segment.close()
        raise IndexFormatError(f"{folder}: vectors.faiss holds {len(vectors)} vectors for {segment.chunks} chunks; rebuild the index")
    return segment
