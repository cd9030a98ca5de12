"""Filters on in-memory columns of published segments give exactly what Filter.matches (and SQL) give."""

from __future__ import annotations

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, Filter, IndexSettings

VALUES = [0, 1, 2, 2.5, -3, True, False, None, "1", "boots", "Boots", "", [1, 2], ["boots"], {"a": 1}, 10**12]
FILTERS = [
    {"v": 1}, {"v": True}, {"v": "1"}, {"v": None}, {"v": "boots"}, {"v": {"$ne": 1}}, {"v": {"$ne": None}},
    {"v": {"$gt": 1}}, {"v": {"$gte": 1}}, {"v": {"$lt": 1}}, {"v": {"$lte": 2.5}}, {"v": {"$gt": -10**13}},
    {"v": {"$in": [0, "boots", None]}}, {"v": {"$nin": [0, "boots"]}}, {"v": {"$exists": True}}, {"v": {"$exists": False}},
    {"$or": [{"v": {"$lt": 0}}, {"w": "x"}]}, {"$and": [{"v": {"$gte": 0}}, {"$not": {"w": "x"}}]},
    {"$not": {"v": {"$in": [1, 2]}}}, {"doc_id": {"$in": ["d3", "d7", "nope"]}}, {"doc_id": {"$ne": "d0"}},
    {"missing_key": 1}, {"missing_key": {"$ne": 1}}, {"v": {"$contains": "oot"}},
]


@pytest.fixture(scope="module")
def published(tiny_model_dir, tmp_path_factory):
    docs = []
    for i in range(len(VALUES) * 3):
        metadata = {"w": "x" if i % 3 == 0 else "y"}
        if i % len(VALUES) != 7 or i < len(VALUES):  # some documents lack the key altogether
            metadata["v"] = VALUES[i % len(VALUES)]
        docs.append(Document(f"d{i}", f"text of document {i}", metadata))
    encoder = DualEncoder(model=str(tiny_model_dir))
    building = DocumentIndex.build(docs, encoder, IndexSettings(dense="off", contextual_headers=False))
    folder = tmp_path_factory.mktemp("columns") / "idx"
    building.save(folder)
    reopened = DocumentIndex.load(folder, encoder, writable=False)
    in_memory = DocumentIndex.build(docs, encoder, IndexSettings(dense="off", contextual_headers=False))  # never saved
    return docs, in_memory, reopened


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_columns_match_the_reference_semantics_and_sql(published, spec):
    docs, building, reopened = published
    parsed = Filter.parse(spec)
    store = reopened.snapshot().states[0].segment.store
    assert store.read_only  # published: answered from columns (or SQL for $contains)
    by_doc = {c.doc_id: c.id for batch in reopened.snapshot().iter_chunks() for c in batch}
    expected = sorted(by_doc[d.id] for d in docs if parsed.matches(d.metadata, d.id))
    assert store.chunk_ids_matching(parsed).tolist() == expected
    sql = building.snapshot().states[0].segment.store  # still being written: SQL
    assert not sql.read_only and sql.chunk_ids_matching(parsed).tolist() == expected
    among = np.asarray(list(by_doc.values())[::2], dtype=np.int64)
    assert store.chunk_ids_matching(parsed, among=among).tolist() == sorted(set(expected) & set(among.tolist()))
    passing, looked = store.sample_share(parsed)
    assert (passing, looked) == (len(expected), len(docs)) or spec == {"v": {"$contains": "oot"}}
