"""The ``VectorStore`` contract: the same tests over every backend — FAISS, milvus-lite embedded (milvus:///file.db)
and milvus-lite server mode (http://127.0.0.1:PORT, as a Milvus server is addressed)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from deepseek_rag.errors import InvalidInputError
from deepseek_rag.vectors.base import Capabilities, IdFilter, VectorStore, open_vector_store
from deepseek_rag.vectors.faiss_store import FaissVectorStore

DIM = 16
BACKENDS = ["faiss", "milvus-lite", "milvus-server"]
# the same index class on each backend: exact, IVF with 8-bit scalar codes, HNSW
SPECS = {"exact": ("Flat", "FLAT"), "ivf": ("IVF16,SQ8", "IVF_SQ8,nlist=16"), "hnsw": ("HNSW16", "HNSW,M=16")}


def unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def make_store(backend, request, tmp_path):
    """make_store(kind) → an empty store of that index class on this test's backend."""
    made = []

    def make(kind: str = "exact"):
        faiss_spec, milvus_spec = SPECS[kind]
        if backend == "faiss":
            return FaissVectorStore(DIM, faiss_spec)
        from deepseek_rag.vectors.milvus import MilvusVectorStore

        uri = (f"milvus://{tmp_path / 'contract.db'}" if backend == "milvus-lite"
               else request.getfixturevalue("milvus_server"))
        store = MilvusVectorStore.create(uri, f"contract_{uuid.uuid4().hex[:10]}", DIM, milvus_spec, rows=200)
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop()
    if backend == "milvus-lite":
        from deepseek_rag.testing import release_milvus_lite

        release_milvus_lite(tmp_path / "contract.db")


def filled(make_store, kind="exact", n=200):
    store = make_store(kind)
    vectors = unit(n)
    ids = np.arange(10, 10 + n, dtype=np.int64) * 3  # ids chosen by the caller, not positions
    store.train(vectors)
    store.add(ids, vectors)
    return store, ids, vectors


def test_it_is_a_vector_store(make_store):
    store = make_store()
    assert isinstance(store, VectorStore)
    assert isinstance(store.capabilities, Capabilities)
    assert store.dim == DIM and store.is_trained and len(store) == 0


def test_exact_search_returns_inner_products_best_first(make_store):
    store, ids, vectors = filled(make_store)
    queries = unit(5, seed=1)
    scores, found = store.search(queries, 7)
    truth = queries @ vectors.T
    expected = ids[np.argsort(-truth, axis=1)[:, :7]]
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, np.sort(truth, axis=1)[:, ::-1][:, :7], atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_more_results_asked_than_held_are_padded(make_store):
    store, ids, vectors = filled(make_store, n=5)
    scores, found = store.search(vectors[:2], 8)
    assert set(found[0, :5]) == set(ids) and (found[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


def test_id_filters_allow_and_exclude(make_store):
    store, ids, vectors = filled(make_store)
    allowed = ids[50:60]
    _, found = store.search(vectors[:3], 5, filter=IdFilter.of(allowed=allowed))
    assert set(found.ravel()) <= set(allowed)
    _, found = store.search(vectors[:3], 5, filter=IdFilter.of(excluded=ids[:3]))
    assert not set(found.ravel()) & set(ids[:3])
    _, found = store.search(vectors[:1], 3, filter=IdFilter.of(allowed=[999_999]))
    assert (found == -1).all()


def test_remove_deletes_and_counts_only_present_ids(make_store):
    store, ids, vectors = filled(make_store)
    assert store.remove(np.array([ids[0], ids[1], 1])) == 2
    assert len(store) == len(ids) - 2
    _, found = store.search(vectors[:2], 3)
    assert ids[0] not in found and ids[1] not in found
    assert store.remove(np.array([ids[0]])) == 0


def test_fetch_returns_the_stored_vectors_in_the_order_asked(make_store):
    store, ids, vectors = filled(make_store)
    np.testing.assert_allclose(store.fetch(ids[[7, 3]]), vectors[[7, 3]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="not in the index"):
        store.fetch(np.array([1]))


def test_bad_ids_and_knobs_are_clear_errors(make_store):
    store, ids, vectors = filled(make_store, n=10)
    with pytest.raises(InvalidInputError, match="already in the index"):
        store.add(ids[:1], vectors[:1])
    with pytest.raises(InvalidInputError, match="duplicate ids"):
        store.add(np.array([5, 5]), vectors[:2])
    with pytest.raises(InvalidInputError, match="not known"):
        store.search(vectors[:1], 3, params={"n_probe": 3})
    with pytest.raises(InvalidInputError):
        store.search(vectors[:1, :4], 3)


def test_saved_store_opens_and_searches_the_same(make_store, backend, tmp_path):
    store, ids, vectors = filled(make_store)
    path = tmp_path / "store.saved"
    store.save(path)
    opened = open_vector_store("faiss" if backend == "faiss" else "milvus", path)
    assert len(opened) == len(ids)
    a = store.search(vectors[:4], 5)
    b = opened.search(vectors[:4], 5)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)


@pytest.mark.parametrize("kind, knobs", [("ivf", {"nprobe": 16}), ("hnsw", {"efSearch": 200})])
def test_approximate_indexes_find_the_exact_neighbours_when_searching_wide(make_store, kind, knobs):
    store, ids, vectors = filled(make_store, kind, n=400)
    if hasattr(store, "finish"):
        store.finish()  # Milvus builds its index on flush + load; unflushed rows are searched exactly
        assert store.index_spec.index_type == SPECS[kind][1].split(",")[0]
    queries = unit(20, seed=3)
    _, found = store.search(queries, 10, params=knobs)
    truth = ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.9
    _, narrow = store.search(queries, 10, params={"nprobe": 1} if kind == "ivf" else {"efSearch": 10})
    narrow_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(narrow, truth)])
    if kind == "ivf":
        assert narrow_recall < recall  # the knob reaches the index: one list of 16 misses neighbours
