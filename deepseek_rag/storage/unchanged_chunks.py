"""Vectors an upsert can keep: a replaced document's chunks whose embedded text did not change.

A catalogue's nightly batch re-sends every product whose price or stock moved, most with the same description;
a chat backend re-upserts a document with one paragraph edited. The encoder is deterministic, so a chunk whose
embedding text (contextual header included) is the same as one the document already has gets that chunk's
stored vector back instead of a forward pass — on two cores the encoder is most of an upsert's cost, and the
cores it would take are the ones queries need meanwhile. Stored vectors are what a rebuild re-indexes anyway
(``rebuild.live_vectors``); an index whose store cannot return them (fast-scan codes without re-ranking codes,
say) simply encodes everything, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..ingest.preparation import PreparedBatch, with_header
from .snapshot import Snapshot

logger = logging.getLogger(__name__)


def encode_changed(snapshot: Snapshot, batch: PreparedBatch, contextual_headers: bool,
                   encode: Callable[[list[str]], np.ndarray], dim: int) -> np.ndarray:
    """One vector per ``batch.embedding_texts``: kept from the document's current chunks where the text is the
    same, from ``encode`` (one call, for the rest) otherwise."""
    texts = batch.embedding_texts
    kept = _kept_chunk_ids(snapshot, batch, contextual_headers)
    if not kept:
        return encode(texts)
    stored = _stored_vectors(snapshot, sorted(set(kept.values())))
    if stored is None:
        return encode(texts)
    fresh = [i for i, text in enumerate(texts) if text not in kept]
    vectors = np.empty((len(texts), dim), dtype=np.float32)
    if fresh:
        vectors[fresh] = encode([texts[i] for i in fresh])
    for i, text in enumerate(texts):
        if text in kept:
            vectors[i] = stored[kept[text]]
    logger.debug("upsert: %d of %d chunk vectors kept (text unchanged), %d encoded", len(texts) - len(fresh),
                 len(texts), len(fresh))
    return vectors


def _kept_chunk_ids(snapshot: Snapshot, batch: PreparedBatch, contextual_headers: bool) -> dict[str, int]:
    """Embedding text → the id of a current chunk that embeds exactly it, over the batch's replaced documents."""
    kept: dict[str, int] = {}
    for document in batch.documents:
        if not snapshot.has_document(document.id):
            continue
        old = snapshot.get_document(document.id)
        if old is None:
            continue
        for chunk in snapshot.chunks_of(document.id):
            kept.setdefault(with_header(chunk.text, old.title, chunk.section, contextual_headers), chunk.id)
    wanted = set(batch.embedding_texts)
    return {text: chunk_id for text, chunk_id in kept.items() if text in wanted}


def _stored_vectors(snapshot: Snapshot, ids: list[int]) -> dict[int, np.ndarray] | None:
    """The stored vectors of ``ids`` (live chunks), or None when a segment's store cannot return them."""
    wanted = np.asarray(ids, dtype=np.int64)
    out: dict[int, np.ndarray] = {}
    for state in snapshot.states:
        store = state.segment.vectors
        held = getattr(store, "ids", None)
        if held is None:  # no vectors here, or a store that does not list its ids
            return None
        mine = wanted[np.isin(wanted, held)]
        if not len(mine):
            continue
        try:
            vectors = store.fetch(mine)
        except Exception as exc:  # noqa: BLE001 - a store without stored vectors: encode instead
            logger.debug("upsert: stored vectors unavailable (%s); encoding every chunk", exc)
            return None
        out.update(zip(mine.tolist(), np.asarray(vectors, dtype=np.float32)))
    return out if len(out) == len(ids) else None
