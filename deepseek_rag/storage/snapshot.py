"""A snapshot: what one version of an index holds — its segments and their deletion markers — read without locks.

A snapshot never changes. A writer makes a new one for every change (adding a segment, or replacing a
segment's deletion markers) and swaps it in with one assignment, so a search that started on the old one
finishes on the old one, consistently: the chunk ids a vector search returns are resolved in the same
snapshot's stores. Searches go to every segment and are merged by score; deleted chunks are excluded as id
filters. The BM25 side is one :class:`~deepseek_rag.sparse.bm25.SparseIndex` over all segments' postings,
so its statistics are the snapshot's live chunks.

Reads that a retriever needs (``get_chunks``, ``chunks_of``, ``document_span``...) have the names and
meaning they had on the first release's single ``ChunkStore``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..documents import Chunk, Document
from ..errors import InvalidInputError
from ..sparse.bm25 import PostingsPart, SparseConfig, SparseIndex
from ..sparse.field_prior import FieldPrior
from ..sparse.query_model import PRIOR_DEPTH
from ..vectors.base import IdFilter, MetadataFilter
from ..vectors.faiss_store import FaissVectorStore
from ..vectors.filters import Filter
from .filtering import FilterPlanner
from .segment import Segment

_EMPTY = np.empty(0, dtype=np.int64)
LEXICAL_ONLY = (
    "this index is lexical-only (built with --dense off, or --dense auto found text its encoder cannot read): it "
    "has no vectors; search it with mode='sparse' (--mode sparse), or give it a dense side with "
    "`deepseek-rag densify DIR --model MODEL`"
)


@dataclass(frozen=True)
class SegmentState:
    """A segment as one snapshot sees it: its deleted chunk ids (sorted) and how many documents they end."""

    segment: Segment
    deleted: np.ndarray = field(default_factory=lambda: _EMPTY)
    deleted_documents: int = 0
    deletes_file: str | None = None  # where ``deleted`` is written (None: nothing deleted, or not yet saved)

    @property
    def live_chunks(self) -> int:
        return self.segment.chunks - len(self.deleted)

    @property
    def live_documents(self) -> int:
        return self.segment.documents - self.deleted_documents

    def is_live(self, chunk_id: int) -> bool:
        if not len(self.deleted):
            return True
        i = int(np.searchsorted(self.deleted, chunk_id))
        return i >= len(self.deleted) or self.deleted[i] != chunk_id


class Snapshot:
    """An immutable view of an index: segments in age order, each with its deletion markers."""

    def __init__(
        self,
        states: Sequence[SegmentState],
        *,
        dim: int,
        template: FaissVectorStore,
        sparse: SparseConfig | None,
        version: int | None = None,
        next_chunk_id: int = 1,
        next_segment: int = 1,
        trained_file: str | None = None,
        dense: bool = True,
        milvus: Any = None,
    ) -> None:
        self.states = tuple(states)
        self.dense = dense  # False: a lexical-only index (no vectors, searched in sparse mode)
        self.milvus = milvus  # a MilvusTarget when published segments live in Milvus (storage/milvus_segments.py)
        self.trained_file = trained_file
        self.dim = dim
        self.template = template
        self.sparse_config = sparse
        self.version = version
        self.next_chunk_id = next_chunk_id
        self.next_segment = next_segment
        self._sparse: SparseIndex | None = None
        self._sparse_lock = threading.Lock()
        self._located: dict[str, tuple[int, list[int]] | None] = {}
        self._planner: FilterPlanner | None = None
        self._most_chunks: int | None = -1  # -1: not computed yet (most_chunks_per_document)
        self._long_ids: dict[int, np.ndarray | None] = {}
        # one id filter per segment for its deletion markers, shared by every search of this snapshot
        self._deletions = [IdFilter(excluded=s.deleted) if len(s.deleted) else None for s in self.states]

    def derive(self, states: Sequence[SegmentState], **changes: Any) -> Snapshot:
        """A new snapshot with other states (and fields); this one is left as it is."""
        fields = {"dim": self.dim, "template": self.template, "sparse": self.sparse_config, "version": self.version,
                  "next_chunk_id": self.next_chunk_id, "next_segment": self.next_segment,
                  "trained_file": self.trained_file, "dense": self.dense, "milvus": self.milvus, **changes}
        return Snapshot(states, **fields)

    # ------------------------------------------------------------------------------------ counts
    def counts(self) -> tuple[int, int]:
        """(documents, chunks) live in this snapshot."""
        return (sum(s.live_documents for s in self.states), sum(s.live_chunks for s in self.states))

    def vector_count(self) -> int:
        return sum(len(s.segment.vectors) - len(s.deleted) for s in self.states if s.segment.vectors is not None)

    @property
    def spec(self) -> str:
        """The vector index spec: a FAISS factory string, or ``milvus:TYPE`` for the Milvus backend."""
        return f"milvus:{self.milvus.spec}" if self.milvus is not None else self.template.spec

    def nbytes(self) -> int:
        """Bytes of the vector files (or of the serialised in-memory indexes)."""
        return sum(s.segment.vectors.nbytes() for s in self.states if s.segment.vectors is not None)

    def vector_ram_bytes(self) -> int:
        """Bytes the vector searches need resident in RAM (memory-mapped re-ranking codes excluded; see ``ram_nbytes``)."""
        return sum(s.segment.vectors.ram_nbytes() for s in self.states if s.segment.vectors is not None)

    # ------------------------------------------------------------------------------------ documents
    def locate(self, doc_id: str) -> tuple[int, list[int]] | None:
        """(index of the state holding the live ``doc_id``, its chunk ids) or None. Newest segments first."""
        if doc_id in self._located:
            return self._located[doc_id]
        found = None
        for position in range(len(self.states) - 1, -1, -1):
            state = self.states[position]
            ids = state.segment.store.chunk_ids_of(doc_id)
            if ids and state.is_live(ids[0]):
                found = (position, ids)
                break
        if len(self._located) < 100_000:
            self._located[doc_id] = found
        return found

    def has_document(self, doc_id: str) -> bool:
        return self.locate(doc_id) is not None

    def most_chunks_per_document(self) -> int | None:
        """An upper bound on the chunks any live document holds: the largest count in one segment, deleted
        chunks included (None when a segment cannot tell). The retriever's focus rule needs a document of at
        least ``top_k`` chunks, so below that bound it skips the rule."""
        if self._most_chunks == -1:
            counts = [s.segment.most_chunks_per_document() for s in self.states]
            self._most_chunks = None if None in counts else max(counts, default=0)
        return self._most_chunks

    def long_document_chunk_ids(self, min_chunks: int) -> np.ndarray | None:
        """Ids (ascending) of the chunks of documents holding at least ``min_chunks`` chunks — deleted chunks
        included, so a superset of the live ones — or None when a segment cannot tell. The focus rule can only
        focus on a document one of a query's candidate chunks belongs to, so a query none of whose candidates is
        in this set keeps its plain ranking without the rule."""
        if min_chunks in self._long_ids:
            return self._long_ids[min_chunks]
        parts = [s.segment.long_document_chunk_ids(min_chunks) for s in self.states]
        ids = None if any(p is None for p in parts) else (np.sort(np.concatenate(parts)) if parts else _EMPTY)
        if len(self._long_ids) < 8:
            self._long_ids[min_chunks] = ids
        return ids

    def document_ids(self) -> list[str]:
        out = []
        for state in self.states:
            for doc_id, first in state.segment.store.document_ids():
                if first is not None and state.is_live(first):
                    out.append(doc_id)
        return out

    def get_document(self, doc_id: str) -> Document | None:
        found = self.locate(doc_id)
        return None if found is None else self.states[found[0]].segment.store.get_document(doc_id)

    def document_metadata(self, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for doc_id in dict.fromkeys(doc_ids):
            found = self.locate(doc_id)
            if found is not None:
                out.update(self.states[found[0]].segment.store.document_metadata([doc_id]))
        return out

    def metadata_keys(self) -> set[str]:
        """The top-level metadata keys of the live documents (what a filter can match besides ``doc_id``)."""
        keys: set[str] = set()
        for state in self.states:
            keys |= state.segment.store.metadata_keys(state.deleted if len(state.deleted) else None)
        return keys

    def document_span(self, doc_id: str, start: int, end: int) -> str:
        found = self.locate(doc_id)
        return "" if found is None else self.states[found[0]].segment.store.document_span(doc_id, start, end)

    # ------------------------------------------------------------------------------------ chunks
    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """Live chunks by id (unknown or deleted ids are left out)."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        out: dict[int, Chunk] = {}
        if not len(wanted):
            return out
        for state in self.states:
            chunk_ids = state.segment.chunk_ids
            mine = wanted[np.isin(wanted, chunk_ids)] if len(self.states) > 1 else wanted
            if len(state.deleted):
                mine = mine[~np.isin(mine, state.deleted)]
            if len(mine):
                out.update(state.segment.store.get_chunks(mine.tolist()))
        return out

    def text_values(self, key: str, ids: np.ndarray) -> list[str | None]:
        """``metadata[key]`` of each chunk's document where it is text, else None (``ids`` ascending, unique):
        published segments answer from their in-memory column, a segment being written from its chunks."""
        value_of: dict[int, str | None] = {}
        for state in self.states:
            mine = ids[np.isin(ids, state.segment.chunk_ids)] if len(self.states) > 1 else ids
            if not len(mine):
                continue
            values = state.segment.store.text_values(key, mine)
            if values is None:
                chunks = state.segment.store.get_chunks(mine.tolist())
                values = [_text(chunks[i].metadata.get(key)) if i in chunks else None for i in mine.tolist()]
            value_of.update(zip(mine.tolist(), values))
        return [value_of.get(i) for i in ids.tolist()]

    def chunks_of(self, doc_id: str, first: int = 0, last: int | None = None) -> list[Chunk]:
        found = self.locate(doc_id)
        return [] if found is None else self.states[found[0]].segment.store.chunks_of(doc_id, first, last)

    def iter_chunks(self, batch_size: int = 4096) -> Iterator[list[Chunk]]:
        """Every live chunk, segment by segment (ids ascending within a segment)."""
        for state in self.states:
            for batch in state.segment.store.iter_chunks(batch_size):
                live = [c for c in batch if state.is_live(c.id)] if len(state.deleted) else batch
                if live:
                    yield live

    def chunk_ids_matching(self, filters: Filter | Mapping[str, Any] | None, among: np.ndarray | None = None) -> np.ndarray:
        """Live chunk ids (ascending) whose document passes ``filters`` (only those in ``among``, when given)."""
        parts = []
        for state in self.states:
            mine = None
            if among is not None:
                mine = among[np.isin(among, state.segment.chunk_ids)]
                if not len(mine):
                    continue
            ids = state.segment.store.chunk_ids_matching(filters, among=mine)
            if len(state.deleted):
                ids = ids[~np.isin(ids, state.deleted)]
            parts.append(ids)
        return np.sort(np.concatenate(parts)) if parts else _EMPTY

    # ------------------------------------------------------------------------------------ searching
    def search_vectors(
        self, query_vectors: np.ndarray, k: int, *, filters: Filter | Mapping[str, Any] | None = None,
        nprobe: int | None = None, params: Mapping[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vector search over every segment, live chunks only, (+ metadata filter) → (scores, ids), (n, k).

        A filter is applied before or after the search by its selectivity (``filtering.py``)."""
        if not self.dense:
            raise InvalidInputError(LEXICAL_ONLY)
        queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        knobs = {**self.template.search_defaults(), **(params or {})}  # the index's calibrated knobs, overridable
        if nprobe is not None:
            knobs["nprobe"] = nprobe
        parsed = Filter.parse(filters)
        if parsed is None:
            return self._vector_search(queries, k, None, knobs)
        if self._pushes_filters():
            return self._pushed_search(queries, k, parsed, knobs)
        return self.planner.search(parsed, k, lambda depth, allowed: self._vector_search(queries, depth, allowed, knobs),
                                   available=self.vector_count())

    def _vector_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None, knobs: dict) -> tuple[np.ndarray, np.ndarray]:
        results = []
        for state, deletions in zip(self.states, self._deletions):
            if state.segment.vectors is None or not len(state.segment.vectors):
                continue
            if allowed is None:
                id_filter = deletions
            else:
                id_filter = IdFilter.of(allowed, state.deleted)
                if not len(id_filter.allowed):
                    continue
            results.append(state.segment.vectors.search(queries, k, filter=id_filter, params=knobs or None))
        return _merge_top_k(results, len(queries), k)

    def _pushes_filters(self) -> bool:
        return any(s.segment.vectors.capabilities.metadata_filter for s in self.states if len(s.segment.chunk_ids))

    def _pushed_search(self, queries: np.ndarray, k: int, parsed: Filter, knobs: dict) -> tuple[np.ndarray, np.ndarray]:
        """A filtered search where segments that evaluate metadata filters get the filter itself (Milvus: a boolean
        expression inside the search) and the others the ids that pass it."""
        results = []
        for state, deletions in zip(self.states, self._deletions):
            vectors = state.segment.vectors
            if not len(state.segment.chunk_ids):
                continue
            pushed = MetadataFilter(parsed, deletions)
            if vectors.capabilities.metadata_filter and vectors.filter_expression(pushed) is not None:
                results.append(vectors.search(queries, k, filter=pushed, params=knobs or None))
                continue
            allowed = state.segment.store.chunk_ids_matching(parsed)
            id_filter = IdFilter.of(allowed, state.deleted)
            if id_filter is not None and id_filter.allowed is not None and not len(id_filter.allowed):
                continue
            results.append(vectors.search(queries, k, filter=id_filter, params=knobs or None))
        return _merge_top_k(results, len(queries), k)

    @property
    def planner(self) -> FilterPlanner:
        """How this snapshot runs filtered searches (selectivity estimates and allowed ids, cached)."""
        if self._planner is None:
            self._planner = FilterPlanner(self)
        return self._planner

    @property
    def has_sparse(self) -> bool:
        return self.sparse_config is not None

    @property
    def sparse(self) -> SparseIndex:
        """The BM25 index over every live chunk (built on first use, once per snapshot)."""
        if self.sparse_config is None:
            raise InvalidInputError(
                "this index has no sparse (BM25) side: it was built with sparse.enabled=False; "
                "search it with mode='dense', or rebuild it with the sparse side enabled"
            )
        if self._sparse is None:
            with self._sparse_lock:
                if self._sparse is None:
                    parts = []
                    for state in self.states:
                        postings = state.segment.postings
                        if postings is None or not len(postings):
                            continue
                        live = None
                        if len(state.deleted):
                            live = ~np.isin(np.asarray(postings.chunk_ids), state.deleted)
                        parts.append(PostingsPart(postings, live))
                    self._sparse = SparseIndex(parts, self.sparse_config)
        return self._sparse

    def search_sparse(
        self, queries: Sequence[str], k: int, *, filters: Filter | Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 search (+ metadata filter) → (scores, ids), both (n, k); chunks sharing no term are left out.
        With a query model's field prior, BM25's best ``PRIOR_DEPTH`` candidates are re-scored by it."""
        sparse = self.sparse
        queries = list(queries)
        prior = sparse.field_prior
        depth = max(k, PRIOR_DEPTH) if prior is not None else k
        parsed = Filter.parse(filters)
        if parsed is None:
            scores, ids = sparse.search(queries, depth)
        else:
            scores, ids = self.planner.search(
                parsed, depth, lambda deeper, allowed: sparse.search(queries, deeper, allowed_ids=allowed),
                available=len(sparse))
        if prior is None:
            return scores, ids
        return self._with_field_prior(prior, queries, scores, ids, k)

    def _with_field_prior(self, prior: FieldPrior, queries: Sequence[str | Mapping[str, float]], scores: np.ndarray,
                          ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = np.unique(ids[ids >= 0])
        value_of = dict(zip(found.tolist(), self.text_values(prior.key, found)))
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, query in enumerate(queries):
            keep = ids[row] >= 0
            if not keep.any():
                continue
            terms = self.sparse.analyze_query(query) if isinstance(query, str) else list(query)
            row_ids = ids[row][keep]
            values = [value_of.get(int(i)) for i in row_ids]
            boosted, order_ids = prior.rescore(terms, scores[row][keep], row_ids, values)
            n = min(k, len(order_ids))
            out_scores[row, :n], out_ids[row, :n] = boosted[:n], order_ids[:n]
        return out_scores, out_ids

    def close(self, keep: Sequence[Segment] = ()) -> None:
        """Close every segment not in ``keep`` (call only when no search runs on this snapshot any more)."""
        kept = {id(s) for s in keep}
        for state in self.states:
            if id(state.segment) not in kept:
                state.segment.close()


class VectorsSummary:
    """What ``DocumentIndex.vectors`` shows: the live vector count, the spec, the bytes, and a plain search."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def __len__(self) -> int:
        return self._snapshot.vector_count()

    @property
    def spec(self) -> str:
        return self._snapshot.spec

    @property
    def dim(self) -> int:
        return self._snapshot.dim

    @property
    def nlist(self) -> int | None:
        return self._snapshot.template.nlist

    @property
    def nprobe(self) -> int | None:
        return self._snapshot.template.nprobe

    def nbytes(self) -> int:
        return self._snapshot.nbytes()

    def search(self, queries: np.ndarray, k: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vector search over the live chunks (see :meth:`Snapshot.search_vectors`)."""
        return self._snapshot.search_vectors(queries, k, **options)


def with_deleted(state: SegmentState, ids: np.ndarray, documents: int) -> SegmentState:
    """``state`` with ``ids`` (of ``documents`` documents) marked deleted as well; the deletes file is unsaved."""
    deleted = np.union1d(state.deleted, np.asarray(ids, dtype=np.int64))
    return replace(state, deleted=deleted, deleted_documents=state.deleted_documents + documents, deletes_file=None)


def _merge_top_k(results: list[tuple[np.ndarray, np.ndarray]], n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not results:
        return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
    if len(results) == 1:
        return results[0]
    scores = np.concatenate([r[0] for r in results], axis=1)
    ids = np.concatenate([r[1] for r in results], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
