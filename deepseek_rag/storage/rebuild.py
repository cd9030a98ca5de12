"""Deriving one side of an index again from what it stores: the vectors under another factory string, or the
BM25 postings under another analysis — without re-chunking or re-encoding.

Both give a new in-memory snapshot that shares the chunk stores (and the other side) with the original, so a
benchmark can compare specs or analysers on one build, and a user can save the result as a new index.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..ingest.preparation import with_header
from ..sparse.analysis import stemmer_language
from ..sparse.bm25 import Postings, SparseConfig
from ..vectors.calibration import VectorSearchSettings, calibrate_template
from ..vectors.faiss_store import FaissVectorStore
from .chunk_store import ChunkStore
from .segment import Segment
from .snapshot import LEXICAL_ONLY, SegmentState, Snapshot


def live_vectors(snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every live chunk, ids ascending within each segment."""
    ids_parts, vector_parts = [], []
    for state in snapshot.states:
        if state.segment.vectors is None:
            continue
        ids = state.segment.vectors.ids
        if len(state.deleted):
            ids = np.setdiff1d(ids, state.deleted, assume_unique=True)
        if len(ids):
            ids_parts.append(ids)
            vector_parts.append(state.segment.vectors.fetch(ids))
    if not ids_parts:
        return np.empty(0, dtype=np.int64), np.zeros((0, snapshot.dim), dtype=np.float32)
    return np.concatenate(ids_parts), np.vstack(vector_parts)


def with_vector_spec(
    snapshot: Snapshot, spec: str, nprobe: int | None = None, search: VectorSearchSettings | None = None
) -> Snapshot:
    """``snapshot`` with its live vectors re-indexed under ``spec`` (trained on all of them), the segments kept;
    ``nprobe`` / ``k_factor`` are chosen for ``search``'s recall target (``nprobe`` given: that one)."""
    if not snapshot.dense:
        raise InvalidInputError(LEXICAL_ONLY)
    ids, vectors = live_vectors(snapshot)
    template = FaissVectorStore(snapshot.dim, spec)
    if len(vectors):
        template.train(vectors)
    states = []
    for state in snapshot.states:
        mine = np.isin(ids, state.segment.vectors.ids)
        store_vectors = template.empty_like()
        store_vectors.add(ids[mine], vectors[mine])
        segment = Segment(state.segment.name, state.segment.store, store_vectors, state.segment.postings)
        states.append(SegmentState(segment, state.deleted, state.deleted_documents))
    if nprobe is not None:
        search = replace(search or VectorSearchSettings(), nprobe=nprobe)
    calibrate_template(template, [s.segment.vectors for s in states], ids, vectors, search)
    return snapshot.derive(states, template=template, version=None, trained_file=None, milvus=None)


def with_sparse(snapshot: Snapshot, config: SparseConfig | None) -> Snapshot:
    """``snapshot`` with every segment's BM25 postings analysed again under ``config`` (None: no BM25 side). Postings
    analysed as ``config`` analyses are kept: a change of scoring only (k1, b, a query model) re-reads nothing."""
    same = (config is not None and snapshot.sparse_config is not None
            and config.analysis_key() == snapshot.sparse_config.analysis_key())
    states = []
    for state in snapshot.states:
        if same and state.segment.postings is not None:
            postings = state.segment.postings
        else:
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


def with_dense(snapshot: Snapshot, encode, spec: str, dim: int, *, embedding_text, progress: bool | None = None) -> Snapshot:
    """A lexical-only ``snapshot`` given its vector side: every live chunk embedded with ``encode(texts, progress)``
    (the text ``embedding_text(chunk)`` names), indexed under ``spec`` (trained on all of them). The segments come
    back in memory (unpublished), so the next publish writes them as new segments, vectors included."""
    chunks = [chunk for batch in snapshot.iter_chunks() for chunk in batch]
    ids = np.asarray([c.id for c in chunks], dtype=np.int64)
    vectors = encode([embedding_text(c) for c in chunks], progress) if chunks else np.zeros((0, dim), dtype=np.float32)
    template = FaissVectorStore(dim, spec)
    if len(vectors):
        template.train(vectors)
    states = []
    for state in snapshot.states:
        live = state.segment.chunk_ids
        if len(state.deleted):
            live = np.setdiff1d(live, state.deleted, assume_unique=True)
        if not len(live):
            continue  # nothing alive: the segment leaves the next version
        mine = np.isin(ids, live)
        store_vectors = template.empty_like()
        store_vectors.add(ids[mine], vectors[mine])
        # the deleted chunks get no vectors: the store and postings keep them, and the publish rewrites without them
        segment = Segment(state.segment.name, state.segment.store, store_vectors, state.segment.postings)
        states.append(SegmentState(segment, state.deleted, state.deleted_documents))
    return snapshot.derive(states, template=template, dim=dim, dense=True, trained_file=None)
