"""Filters on Milvus: the compiled boolean expression agrees with the reference semantics (``Filter.matches``)
everywhere, inside scalar queries and inside vector searches, on real milvus-lite."""

from __future__ import annotations

import random

import numpy as np
import pytest
from test_filters import catalogue, random_filter

from deepseek_rag import Chunk, Filter
from deepseek_rag.storage.milvus_store import MilvusChunkStore, chunk_rows
from deepseek_rag.vectors.base import IdFilter, MetadataFilter
from deepseek_rag.vectors.milvus import MilvusVectorStore
from deepseek_rag.vectors.milvus_filter import filter_expression

DIM = 8


@pytest.fixture(scope="module")
def catalogue_store(tmp_path_factory):
    from deepseek_rag.testing import release_milvus_lite

    path = tmp_path_factory.mktemp("milvus-filters") / "filters.db"
    docs = catalogue()
    docs[0].metadata["note"] = "50% off_now"  # LIKE wildcards in the data
    store = MilvusVectorStore.create(f"milvus://{path}", "catalogue", DIM, "FLAT", chunk_fields=True)
    vectors = np.random.default_rng(0).standard_normal((len(docs), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for i, doc in enumerate(docs):
        chunk = Chunk(doc.id, 0, 0, len(doc.text), doc.text, id=i + 1)
        rows.extend(chunk_rows(doc, [chunk], vectors[i : i + 1]))
    store.insert_rows(rows)
    store.finish()
    yield docs, store, vectors
    release_milvus_lite(path)


def expected_ids(docs, parsed):
    return {i + 1 for i, d in enumerate(docs) if parsed.matches(d.metadata, d.id)}


def test_milvus_expressions_agree_with_the_reference_on_random_filters(catalogue_store):
    docs, store, _ = catalogue_store
    chunks = MilvusChunkStore(store)
    rng = random.Random(7)
    checked = pushed = 0
    for _ in range(300):
        parsed = Filter.parse(random_filter(rng))
        expected = expected_ids(docs, parsed)
        assert set(chunks.chunk_ids_matching(parsed).tolist()) == expected, parsed
        checked += bool(expected) and len(expected) < len(docs)
        pushed += filter_expression(parsed) is not None
    assert checked > 50 and pushed > 250  # many select something but not everything; most are pushed to Milvus


@pytest.mark.parametrize("spec", [
    {"price": None}, {"price": {"$ne": None}}, {"in_stock": 1}, {"in_stock": {"$gte": 0}}, {"price": {"$lte": 120}},
    {"price": "120"}, {"tags": {"$contains": "sale"}}, {"title": {"$contains": "boot"}}, {"stock": {"$nin": [0, 1]}},
    {"$not": {"brand": "trail"}}, {"doc_id": {"$in": ["p1", "p7"]}}, {"doc_id": {"$gt": 1}}, {"missing": {"$exists": False}},
    {"note": {"$contains": "% off_"}}, {"$or": [{"brand": {"$exists": False}}, {"price": {"$gt": 250.5}}]},
])
def test_edge_cases_of_types_nulls_and_missing_keys(catalogue_store, spec):
    docs, store, _ = catalogue_store
    parsed = Filter.parse(spec)
    assert set(MilvusChunkStore(store).chunk_ids_matching(parsed).tolist()) == expected_ids(docs, parsed)


def test_a_filtered_vector_search_is_exact_and_runs_inside_milvus(catalogue_store):
    docs, store, vectors = catalogue_store
    parsed = Filter.parse({"brand": "trail", "price": {"$gte": 50}})
    allowed = np.asarray(sorted(expected_ids(docs, parsed)), dtype=np.int64)
    queries = vectors[:4]
    scores, ids = store.search(queries, 5, filter=MetadataFilter(parsed, IdFilter.of(excluded=allowed[:1])))
    truth = queries @ vectors[allowed[1:] - 1].T
    expected = allowed[1:][np.argsort(-truth, axis=1)[:, :5]]
    np.testing.assert_array_equal(ids, expected)
    expression = store.filter_expression(MetadataFilter(parsed))
    assert 'meta_str["brand"] == "trail"' in expression and "id in" not in expression  # an expression, not ids
