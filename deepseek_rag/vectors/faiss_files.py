"""Reading and writing the FAISS index file of a :class:`~deepseek_rag.vectors.faiss_store.FaissVectorStore`.

Plain functions: an atomic write (temporary file beside the target, fsync, rename, fsync of the folder), a
read that turns faiss's C++ errors into :class:`IndexFormatError`, and the checks a loaded index must pass
(inner product; caller ids held by IVF lists or ``IndexIDMap2``, never IVF or refinement inside an
``IndexIDMap``). The re-ranking codes of a two-level spec have their own file (``refine.py``).
"""

from __future__ import annotations

import os
import shutil

import faiss
import numpy as np

from ..errors import IndexFormatError
from ..storage.layout import fsync_path
from .specs import faiss_reason, has_refine, ivf_of, uses_block_lists


def file_signature(path: str) -> tuple[int, int, int]:
    """(inode, size, mtime): what tells a file rewritten in place from the one that was memory-mapped."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def write_index_file(index: faiss.Index, path: str, mapped_from: tuple[str, tuple[int, int, int]] | None) -> None:
    """Write ``index`` to ``path`` atomically; a memory-mapped index is copied from its source file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if mapped_from is not None:
            # a mmapped index would be written as a stub pointing at its source file: copy the source instead
            source, signature = mapped_from
            if file_signature(source) != signature:
                raise IndexFormatError(f"{source} changed on disk since this index was memory-mapped from it; load it again")
            shutil.copyfile(source, tmp)
        else:
            faiss.write_index(index, tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def fsync_folder_of(path: str) -> None:
    """Make a rename into ``path``'s folder durable (POSIX only)."""
    if os.name == "posix":
        fsync_path(os.path.dirname(os.path.abspath(path)))


def read_index_file(path: str, mmap: bool) -> faiss.Index:
    """The faiss index saved at ``path`` (IVF lists memory-mapped with ``mmap``), or an :class:`IndexFormatError`."""
    if not os.path.isfile(path):
        raise IndexFormatError(f"no index file at {path}; check the path or rebuild the index")
    try:
        return faiss.read_index(path, faiss.IO_FLAG_MMAP if mmap else 0)
    except RuntimeError as exc:
        raise IndexFormatError(
            f"cannot read the FAISS index at {path} ({faiss_reason(exc)}): the file is truncated or not "
            "a FAISS index; rebuild the index"
        ) from exc


def adopt_loaded(index: faiss.Index, path: str) -> tuple[np.ndarray, bool, str]:
    """(sorted ids, whether its IVF lists are memory-mapped, its factory string) of an index read from ``path``.

    Restores the hashtable direct map that IVF removal needs (faiss does not save it)."""
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexFormatError(f"the FAISS index at {path} does not use inner product; rebuild the index")
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    ivf = ivf_of(inner)
    if has_refine(inner) or (isinstance(index, faiss.IndexIDMap) and ivf is not None):
        raise IndexFormatError(f"the FAISS index at {path} wraps IVF or refinement in IndexIDMap; rebuild the index")
    mapped = False
    if isinstance(index, faiss.IndexIDMap):
        ids = np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    elif ivf is not None:
        ids = np.sort(ivf_ids(ivf))
        if not uses_block_lists(ivf) and ivf.direct_map.type != faiss.DirectMap.Hashtable:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        mapped = isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
    else:
        raise IndexFormatError(f"the FAISS index at {path} holds no caller ids; rebuild it with FaissVectorStore")
    try:
        from faiss.contrib.factory_tools import reverse_index_factory

        spec = reverse_index_factory(inner)
    except Exception:  # noqa: BLE001 - a description only; unknown layouts keep a generic name
        spec = type(inner).__name__
    return ids, mapped, spec


def ivf_ids(ivf: faiss.IndexIVF) -> np.ndarray:
    """Every id stored in ``ivf``'s inverted lists, list by list."""
    parts = [np.empty(0, dtype=np.int64)]
    invlists = ivf.invlists
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            ptr = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(ptr, size).astype(np.int64))
            invlists.release_ids(list_no, ptr)
    return np.concatenate(parts)

