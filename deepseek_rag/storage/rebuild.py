"""Deriving one side of an index again from what it stores: the vectors under another factory string, or the
BM25 postings under another analysis — without re-chunking or re-encoding.

Both give a new in-memory snapshot that shares the chunk stores (and the other side) with the original, so a
benchmark can compare specs or analysers on one build, and a user can save the result as a new index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ingest.preparation import with_header
from ..sparse.analysis import stemmer_language
from ..sparse.bm25 import Postings, SparseConfig
from ..vectors.faiss_store import FaissVectorStore
from .chunk_store import ChunkStore
from .segment import Segment
from .snapshot import SegmentState, Snapshot


def live_vectors(snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every live chunk, ids ascending within each segment."""
    ids_parts, vector_parts = [], []
    for state in snapshot.states:
        ids = state.segment.vectors.ids
        if len(state.deleted):
            ids = np.setdiff1d(ids, state.deleted, assume_unique=True)
        if len(ids):
            ids_parts.append(ids)
            vector_parts.append(state.segment.vectors.fetch(ids))
    if not ids_parts:
        return np.empty(0, dtype=np.int64), np.zeros((0, snapshot.dim), dtype=np.float32)
    return np.concatenate(ids_parts), np.vstack(vector_parts)


def with_vector_spec(snapshot: Snapshot, spec: str, nprobe: int | None = None) -> Snapshot:
    """``snapshot`` with its live vectors re-indexed under ``spec`` (trained on all of them), one segment."""
    ids, vectors = live_vectors(snapshot)
    template = FaissVectorStore(snapshot.dim, spec)
    if len(vectors):
        template.train(vectors)
    template.nprobe = nprobe
    states = []
    for state in snapshot.states:
        mine = np.isin(ids, state.segment.vectors.ids)
        store_vectors = template.empty_like()
        store_vectors.add(ids[mine], vectors[mine])
        segment = Segment(state.segment.name, state.segment.store, store_vectors, state.segment.postings)
        states.append(SegmentState(segment, state.deleted, state.deleted_documents))
    return snapshot.derive(states, template=template, version=None, trained_file=None, milvus=None)


def with_sparse(snapshot: Snapshot, config: SparseConfig | None) -> Snapshot:
    """``snapshot`` with every segment's BM25 postings analysed again under ``config`` (None: no BM25 side)."""
    states = []
    for state in snapshot.states:
        postings = analyse_store(state.segment.store, config) if config is not None else None
        segment = Segment(state.segment.name, state.segment.store, state.segment.vectors, postings)
        states.append(SegmentState(segment, state.deleted, state.deleted_documents))
    return snapshot.derive(states, sparse=config, version=None)


def analyse_store(store: ChunkStore, config: SparseConfig) -> Postings:
    """BM25 postings of every chunk in ``store``, analysed from its stored text under ``config``."""
    ids: list[int] = []
    terms: list[list[str]] = []
    algorithms: dict[str, None] = {}
    analyzers: dict[str, Any] = {}
    for batch in store.iter_chunks():
        for chunk in batch:
            language = chunk.metadata.get("language")
            algorithm = stemmer_language(language)
            algorithms[algorithm] = None
            analyzer = analyzers.get(algorithm) or analyzers.setdefault(algorithm, config.analyzer(language))
            title = chunk.metadata.get("title")
            ids.append(int(chunk.id))
            terms.append(analyzer(with_header(chunk.text, str(title) if title else None, chunk.section, config.headers)))
    order = np.argsort(ids, kind="stable")
    return Postings.from_terms([ids[i] for i in order], [terms[i] for i in order], list(algorithms))
