"""Merging FAISS stores into one, as a segment merge does: IVF lists are moved, not re-encoded.

IVF parts share the template's trained centroids, so their inverted lists (codes and ids) move over with
faiss's ``merge_from`` and a two-level spec's re-ranking codes move with them; the ids each part excludes
(its deleted chunks) are removed afterwards. Other indexes (Flat, HNSW) are rebuilt from their stored
vectors, which is exact for them. A friend of :class:`~deepseek_rag.vectors.faiss_store.FaissVectorStore`:
it reads and sets the store's private fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import faiss
import numpy as np

from .specs import ivf_of, uses_block_lists

if TYPE_CHECKING:
    from .faiss_store import FaissVectorStore


def merge_stores(template: FaissVectorStore, parts: Sequence[tuple[FaissVectorStore, np.ndarray | None]]) -> FaissVectorStore:
    """One store holding every vector of ``parts`` except each part's excluded ids (sorted arrays or None),
    trained as ``template``."""
    out = template.empty_like()
    ivf = None if out._index is None else ivf_of(out._index)
    hashtable = ivf is not None and not uses_block_lists(ivf)
    if hashtable:
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # faiss merges IVF lists only without direct maps
    dropped = []
    for part, excluded in parts:
        if not len(part):
            continue
        if ivf is not None:
            source = faiss.clone_index(part._in_memory_index())
            source_ivf = ivf_of(source)
            if not uses_block_lists(source_ivf):
                source_ivf.set_direct_map_type(faiss.DirectMap.NoMap)
            out._index.merge_from(source, 0)
            if out._refine is not None:
                out._refine = out._refine.inserted(out._ids, part._ids, part._refine.codes)
            out._ids = np.union1d(out._ids, part._ids)
            if excluded is not None and len(excluded):
                dropped.append(excluded[np.isin(excluded, part._ids)])
        else:
            keep = part._ids if excluded is None else np.setdiff1d(part._ids, excluded, assume_unique=True)
            if len(keep):
                out.add(keep, part.fetch(keep))
    if hashtable:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    if dropped:
        out.remove(np.concatenate(dropped))
    out._gpu.drop()
    return out
