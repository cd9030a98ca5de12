"""The parts of a FAISS search around ``index.search``: an :class:`IdFilter` as a faiss selector, the per-call
search parameters, the re-scoring of candidates with finer vectors (two-level specs, ``rescore_vectors``), and the
exact scoring of a narrow filter's allowed ids in place of the index search.

Plain functions used by :class:`~deepseek_rag.vectors.faiss_store.FaissVectorStore`; they hold no state
beyond what a filter caches for the searches of one snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from ..errors import InvalidInputError
from .base import IdFilter
from .specs import uses_block_lists


def id_selection(filter: IdFilter | None, held: np.ndarray) -> tuple[Any, int, list[Any]]:
    """(faiss selector or None, how many held ids it lets through, objects to keep alive during the search).

    ``held`` are the store's sorted ids. faiss selectors hold raw pointers, so the arrays they point into must
    outlive the search: the third value keeps them. Deletion markers (``excluded``) are the same for every
    search of a snapshot, so their selector is built once and cached on the filter.
    """
    if filter is None:
        return None, len(held), []
    if not isinstance(filter, IdFilter):
        raise InvalidInputError("the FAISS backend filters by id only: resolve metadata filters to ids first (IdFilter)")
    if filter.allowed is not None:
        allowed = filter.allowed[held_among(filter.allowed, held)]
        return faiss.IDSelectorBatch(allowed), len(allowed), [allowed]
    if filter.excluded is None:
        return None, len(held), []
    excluded = filter.excluded
    present = filter.cache.get("present")
    if present is None:
        present = filter.cache["present"] = int(np.isin(excluded, held, assume_unique=True).sum())
    cached = filter.cache.get("faiss")
    if cached is None:
        inner = faiss.IDSelectorBatch(excluded)
        cached = filter.cache["faiss"] = (faiss.IDSelectorNot(inner), inner, excluded)
    return cached[0], len(held) - present, [cached]


def held_among(ids: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in ``held`` (sorted): binary searches, O(len(ids) log len(held)) — ``np.isin`` would
    sort all of ``held`` again for every search, milliseconds for a narrow filter over a large store."""
    if not len(held):
        return np.zeros(len(ids), dtype=bool)
    position = np.minimum(np.searchsorted(held, ids), len(held) - 1)
    return held[position] == ids


def search_parameters(ivf: faiss.IndexIVF | None, selector: Any, nprobe: int, ef_search: int | None) -> Any:
    """faiss's per-call parameters: lists probed (IVF), nodes explored (HNSW), the id selector."""
    if ivf is not None:
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, nprobe))
    if ef_search is not None and hasattr(faiss, "SearchParametersHNSW"):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef_search)
    return None if selector is None else faiss.SearchParameters(sel=selector)


def rescore(
    q: np.ndarray, candidates: np.ndarray, fetch_vectors: Callable[[np.ndarray], np.ndarray], dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """``candidates`` (n, c; -1 for none) re-scored by inner product with the vectors ``fetch_vectors(ids)``
    returns for their sorted unique ids, best first."""
    valid = candidates >= 0
    unique, inverse = np.unique(candidates[valid], return_inverse=True)
    exact = np.full(candidates.shape, -np.inf, dtype=np.float32)
    if len(unique):
        vectors = np.asarray(fetch_vectors(unique), dtype=np.float32)
        if vectors.shape != (len(unique), dim):
            raise InvalidInputError(
                f"rescore_vectors returned shape {vectors.shape} for {len(unique)} ids; "
                f"it must return one {dim}-dim vector per id, in the order given"
            )
        rows = np.nonzero(valid)[0]
        exact[valid] = np.einsum("ij,ij->i", vectors[inverse.ravel()], q[rows])
    order = np.argsort(-exact, axis=1, kind="stable")
    return np.take_along_axis(exact, order, 1), np.take_along_axis(candidates, order, 1)


def exact_search(
    index: faiss.Index | None, ivf: faiss.IndexIVF | None, dim: int, q: np.ndarray, k: int, allowed: np.ndarray,
    scores: np.ndarray, ids: np.ndarray,
) -> bool:
    """Fill ``scores``/``ids`` with the top-``k`` among ``allowed`` (ids present in ``index``) by the inner product
    with their stored vectors: every allowed vector is scored, where an IVF search would visit only the probed
    lists (a narrow filter, ``faiss_store.EXACT_FILTER_LIMIT``). False (nothing filled) when the index cannot
    return its stored vectors (fast-scan codes). ``ivf`` is the index's IVF part, if any."""
    if index is None or (ivf is not None and uses_block_lists(ivf)):
        return False
    try:
        vectors = np.asarray(index.reconstruct_batch(allowed), dtype=np.float32).reshape(len(allowed), dim)
    except RuntimeError:  # an index type without reconstruction: search it instead
        return False
    top_k_of(q, k, allowed, vectors, scores, ids)
    return True


def exact_rescored_search(
    q: np.ndarray, k: int, allowed: np.ndarray, fetch_vectors: Callable[[np.ndarray], np.ndarray], dim: int,
    scores: np.ndarray, ids: np.ndarray,
) -> None:
    """As :func:`exact_search`, with the re-scoring vectors (a two-level index's finer codes, or the caller's
    exact vectors) in place of the index's own codes: a narrow filter's every allowed id is scored with them,
    instead of a full fast-scan pass over the whole index that the selector then mostly rejects."""
    vectors = np.asarray(fetch_vectors(allowed), dtype=np.float32)
    if vectors.shape != (len(allowed), dim):
        raise InvalidInputError(f"rescore_vectors returned shape {vectors.shape} for {len(allowed)} ids; "
                                f"it must return one {dim}-dim vector per id, in the order given")
    top_k_of(q, k, allowed, vectors, scores, ids)


def top_k_of(q: np.ndarray, k: int, allowed: np.ndarray, vectors: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> None:
    """Fill ``scores``/``ids`` with each query's top-``k`` of ``allowed`` by inner product with ``vectors``."""
    exact = q @ vectors.T
    m = min(k, len(allowed))
    top = np.argpartition(-exact, m - 1, axis=1)[:, :m] if m < len(allowed) else np.tile(np.arange(m), (len(q), 1))
    top_scores = np.take_along_axis(exact, top, 1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    scores[:, :m] = np.take_along_axis(top_scores, order, 1)
    ids[:, :m] = allowed[np.take_along_axis(top, order, 1)]
