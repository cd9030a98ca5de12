"""FaissVectorStore: ids survive add/remove/save/load, filters restrict, specs are honoured or refused clearly."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from deepseek_rag.errors import IndexFormatError, IndexSpecError, InvalidInputError
from deepseek_rag.vectors.base import IdFilter
from deepseek_rag.vectors.faiss_store import FaissVectorStore
from deepseek_rag.vectors.specs import (
    AUTO_IVF_THRESHOLD,
    MIN_POINTS_PER_LIST,
    default_nprobe,
    resolve_auto_spec,
    suggest_nlist,
)

DIM = 32
N = 2000


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)  # float64 on purpose: the index casts


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """Spinning OpenMP threads on a busy CI box make k-means 10x slower; one thread keeps tests ~1 s."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(N, dtype=np.int64) * 10 + 7  # sparse, non-positional ids
    return ids, unit_vectors(N)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def built(spec: str, corpus) -> FaissVectorStore:
    ids, vectors = corpus
    index = FaissVectorStore(DIM, spec)
    index.add(ids, vectors)
    return index


def test_flat_finds_each_vector_itself_with_score_one(corpus):
    ids, vectors = corpus
    index = built("Flat", corpus)
    assert len(index) == N and index.is_trained and index.spec == "Flat"
    scores, found = index.search(vectors[:50], 3)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and found.shape == (50, 3)
    np.testing.assert_array_equal(found[:, 0], ids[:50])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores are higher-is-better, sorted descending"


def test_single_query_search_leaves_the_thread_setting_as_it_was(corpus, monkeypatch):
    """A lone query runs on one faiss thread (no OpenMP wake-up); the caller's setting comes back after."""
    index = built("Flat", corpus)
    seen = []
    search = index._index.search
    monkeypatch.setattr(index._index, "search", lambda *a, **kw: (seen.append(faiss.omp_get_max_threads()), search(*a, **kw))[1])
    faiss.omp_set_num_threads(2)
    try:
        index.search(corpus[1][0], 3)
        index.search(corpus[1][:40], 3)
        assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(1)
    assert seen == [1, 2]


def test_one_dimensional_query_gives_one_row(corpus):
    _, vectors = corpus
    scores, found = built("Flat", corpus).search(vectors[3], 2)
    assert scores.shape == found.shape == (1, 2)


@pytest.mark.parametrize("spec, min_recall", [("IVF16,Flat", 1.0), ("IVF16,PQ8x8", 0.5)])
def test_ivf_with_all_lists_probed_finds_the_neighbours(corpus, spec, min_recall):
    ids, vectors = corpus
    index = built(spec, corpus)
    assert index.nlist == 16 and index.nprobe == 16  # default: nlist // 8, at least 32, at most nlist
    index.nprobe = 100
    assert index.nprobe == 16
    queries = unit_vectors(100, seed=1)
    _, found = index.search(queries, 10, params={"nprobe": 16})
    truth = exact_top(vectors, ids, queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= min_recall
    _, itself = index.search(vectors[:200], 1, params={"nprobe": 16})
    assert (itself[:, 0] == ids[:200]).mean() >= 0.95
    if spec == "IVF16,Flat":  # a single probed list misses neighbours, so nprobe does reach faiss
        _, one_probe = index.search(queries, 10, params={"nprobe": 1})
        assert (one_probe != found).any()


@pytest.mark.parametrize("spec", ["Flat", "IVF16,Flat", "IVF16,PQ8x4fs", "SQ8"])
def test_ids_survive_repeated_removes_save_and_load(corpus, spec, tmp_path):
    ids, vectors = corpus
    index = built(spec, corpus)
    assert index.remove(ids[:10]) == 10
    assert index.remove(ids[10:20]) == 10  # a second remove: the IndexIDMap2-over-IVF trap
    assert index.remove(ids[5:15]) == 0  # already gone
    assert index.remove(np.array([999_999_999])) == 0
    assert len(index) == N - 20

    probe = slice(20, 60)
    _, found = index.search(vectors[probe], 5, params={"nprobe": 16})
    assert not np.isin(found, ids[:20]).any()
    assert (found[:, 0] == ids[probe]).mean() >= 0.9

    index.add(ids[:5], vectors[:5])  # removed ids can be reused
    path = tmp_path / "vectors.faiss"
    index.save(path)
    assert not list(tmp_path.glob("*.tmp-*"))
    assert index.nbytes() == path.stat().st_size

    loaded = FaissVectorStore.open(path, mmap=False)
    assert len(loaded) == N - 15 and loaded.spec == spec
    np.testing.assert_array_equal(loaded.ids, index.ids)
    _, again = loaded.search(vectors[probe], 5, params={"nprobe": 16})
    np.testing.assert_array_equal(again, found)
    assert loaded.remove(ids[20:22]) == 2 and loaded.remove(ids[20:23]) == 1
    loaded.add(ids[10:12], vectors[10:12])
    assert len(loaded) == N - 16


def test_mmapped_ivf_is_read_only_but_searches_and_saves(corpus, tmp_path):
    ids, vectors = corpus
    index = built("IVF16,Flat", corpus)
    index.remove(ids[:3])
    index.save(tmp_path / "a.faiss")

    mapped = FaissVectorStore.open(tmp_path / "a.faiss")  # mmap is the default
    assert mapped.read_only and len(mapped) == N - 3
    _, found = mapped.search(vectors[3:10], 1, params={"nprobe": 16})
    np.testing.assert_array_equal(found[:, 0], ids[3:10])
    with pytest.raises(InvalidInputError, match="mmap=False"):
        mapped.add(np.array([1]), vectors[:1])
    with pytest.raises(InvalidInputError, match="mmap=False"):
        mapped.remove(ids[5:6])

    mapped.save(tmp_path / "b.faiss")  # a copy of the source, not faiss's mmap stub
    copy = FaissVectorStore.open(tmp_path / "b.faiss", mmap=False)
    assert not copy.read_only and len(copy) == N - 3
    assert copy.remove(ids[5:6]) == 1


def test_allowed_ids_restrict_results(corpus):
    ids, vectors = corpus
    allowed = ids[100:130]
    for spec in ("Flat", "IVF16,Flat"):
        index = built(spec, corpus)
        scores, found = index.search(vectors[:20], 10, filter=IdFilter.of(allowed), params={"nprobe": 16})
        assert np.isin(found, allowed).all(), spec
        np.testing.assert_array_equal(found, exact_top(vectors[100:130], allowed, vectors[:20], 10))
        # fewer allowed than k: padded
        _, few = index.search(vectors[:2], 5, filter=IdFilter.of(ids[[0, 1, 2]]), params={"nprobe": 16})
        assert set(few[0, :3]) == set(ids[:3]) and (few[:, 3:] == -1).all()
        # nothing allowed that exists: all padding, no faiss call
        s, none = index.search(vectors[:2], 3, filter=IdFilter.of(np.array([5])))
        assert (none == -1).all() and np.isneginf(s).all()


def test_narrow_filters_are_exact_even_when_ivf_probes_one_list(corpus):
    """A narrow filter's ids are scattered over every IVF list: probing one list would miss most of them."""
    ids, vectors = corpus
    index = built("IVF16,Flat", corpus)
    allowed = ids[::40]  # 50 ids spread over the lists
    _, found = index.search(vectors[:20], 10, filter=IdFilter.of(allowed), params={"nprobe": 1})
    np.testing.assert_array_equal(found, exact_top(vectors[::40], allowed, vectors[:20], 10))


def test_wider_filters_probe_more_lists_in_proportion(corpus, monkeypatch):
    """Above the exact limit, nprobe grows by ntotal / allowed: a filter passing 1/8 probes 8x the lists."""
    from deepseek_rag.vectors import faiss_store

    monkeypatch.setattr(faiss_store, "EXACT_FILTER_LIMIT", 10)
    ids, vectors = corpus
    index = built("IVF16,Flat", corpus)
    allowed = ids[::8]  # 250 ids: 2 lists x 8 = all 16 probed
    _, found = index.search(vectors[:20], 10, filter=IdFilter.of(allowed), params={"nprobe": 2})
    np.testing.assert_array_equal(found, exact_top(vectors[::8], allowed, vectors[:20], 10))


def test_k_larger_than_ntotal_pads_with_minus_one():
    index = FaissVectorStore(DIM, "Flat")
    index.add(np.array([4, 8, 15]), unit_vectors(3))
    scores, found = index.search(unit_vectors(2, seed=3), 5)
    assert found.shape == (2, 5)
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert set(found[0, :3]) == {4, 8, 15}
    empty = FaissVectorStore(DIM)
    assert (empty.search(unit_vectors(1), 2)[1] == -1).all()


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_raises(corpus, k):
    with pytest.raises(InvalidInputError, match="k must be"):
        built("Flat", corpus).search(corpus[1][:1], k)


def test_dimension_mismatch_raises(corpus):
    index = built("Flat", corpus)
    with pytest.raises(InvalidInputError, match=r"\(n, 32\)"):
        index.search(unit_vectors(1, dim=16), 3)
    with pytest.raises(InvalidInputError, match=r"\(n, 32\)"):
        index.add(np.array([1]), unit_vectors(1, dim=16))


def test_bad_ids_raise(corpus):
    ids, vectors = corpus
    index = built("Flat", corpus)
    with pytest.raises(InvalidInputError, match="already in the index"):
        index.add(ids[:2], vectors[:2])
    with pytest.raises(InvalidInputError, match="duplicate"):
        FaissVectorStore(DIM, "Flat").add(np.array([1, 1]), vectors[:2])
    with pytest.raises(InvalidInputError, match="one id per vector"):
        FaissVectorStore(DIM, "Flat").add(np.array([1]), vectors[:2])
    with pytest.raises(InvalidInputError, match="non-negative"):
        FaissVectorStore(DIM, "Flat").add(np.array([-1]), vectors[:1])
    with pytest.raises(InvalidInputError, match="NaN"):
        FaissVectorStore(DIM, "Flat").add(np.array([1]), np.full((1, DIM), np.nan))


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("IVFxx,Foo", "could not parse"),
        ("IVF16,PQ7x8", "multiple of the number of subquantizers"),
        ("IVF16,Flat,RFlat,RFlat", "supported once, at the end"),
        ("IVF16,PQ8x4fs,Refine(HNSW8)", "not a codec faiss can encode"),
        ("IVF16,PQ8x4fs,Refine(Foo)", "not a codec faiss can encode"),
        ("IDMap2,Flat", "drop 'IDMap'"),
        ("", "factory string"),
    ],
)
def test_bad_specs_name_the_reason(spec, reason):
    with pytest.raises(IndexSpecError, match=reason) as err:
        FaissVectorStore(DIM, spec)
    assert repr(spec) in str(err.value)


def test_ivf_with_more_lists_than_vectors_raises():
    index = FaissVectorStore(DIM, "IVF64,Flat")
    with pytest.raises(IndexSpecError, match="IVF64 needs at least 64 vectors to train, got 30"):
        index.add(np.arange(30), unit_vectors(30))
    with pytest.raises(IndexSpecError, match="at least as large as number of clusters"):
        FaissVectorStore(DIM, "IVF4,PQ8x8").train(unit_vectors(100))  # PQ8x8 needs 256 training points


def test_few_vectors_per_list_warns(caplog):
    FaissVectorStore(DIM, "IVF16,Flat").train(unit_vectors(16 * MIN_POINTS_PER_LIST - 1))
    assert "fewer than 39 per list" in caplog.text


def test_hnsw_refuses_removal_clearly(corpus):
    ids, vectors = corpus
    index = FaissVectorStore(DIM, "HNSW16")
    index.add(ids[:200], vectors[:200])
    with pytest.raises(InvalidInputError, match="does not support deletion"):
        index.remove(ids[:1])
    assert len(index) == 200 and index.search(vectors[:1], 1)[1][0, 0] == ids[0]
    # an index holds deletions as id filters, which HNSW honours
    excluded = index.search(vectors[:1], 1, filter=IdFilter.of(excluded=ids[:1]))[1][0, 0]
    assert excluded not in (ids[0], -1)


@pytest.mark.parametrize("spec", ["Flat", "IVF16,SQ8", "HNSW16", "IVF16,PQ8x4fs"])
def test_excluded_ids_never_come_back_and_merges_drop_them(corpus, spec, tmp_path):
    ids, vectors = corpus
    index = built(spec, corpus)
    gone = ids[:100]
    _, found = index.search(vectors[:100], 10, filter=IdFilter.of(excluded=gone), params={"nprobe": 16})
    assert not np.isin(found, gone).any() and (found >= 0).all()
    index.save(tmp_path / "a.faiss")
    mapped = FaissVectorStore.open(tmp_path / "a.faiss")
    merged = FaissVectorStore.merged(index.empty_like(), [(mapped, gone), (FaissVectorStore(DIM, spec).empty_like()
                                                                            if spec == "Flat" else index.empty_like(), None)])
    assert len(merged) == len(ids) - 100 and not np.isin(gone, merged.ids).any()
    _, again = merged.search(vectors[100:110], 1, params={"nprobe": 16})
    if spec in ("Flat", "HNSW16"):
        assert (again[:, 0] == ids[100:110]).all()


def test_fetch_returns_stored_vectors(corpus):
    ids, vectors = corpus
    index = built("Flat", corpus)
    np.testing.assert_allclose(index.fetch(ids[[5, 2]]), vectors[[5, 2]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="not in the index"):
        index.fetch(np.array([10**9]))


def test_auto_spec_resolution():
    assert resolve_auto_spec(AUTO_IVF_THRESHOLD - 1, 384) == "Flat"
    assert resolve_auto_spec(1_000_000, 384) == "IVF4096,PQ192x4fs,Refine(SQ8)"
    assert resolve_auto_spec(100_000, 32) == "IVF1024,PQ16x4fs,Refine(SQ8)"
    assert resolve_auto_spec(100_000, 33) == "IVF1024,SQ8"  # no dim/2 sub-quantizers
    assert default_nprobe(4096) == 128 and default_nprobe(1024) == 32 and default_nprobe(16) == 16
    for n in (1, 40, 1000, AUTO_IVF_THRESHOLD, 10**7):
        nlist = suggest_nlist(n)
        assert nlist & (nlist - 1) == 0 and (nlist == 1 or n // nlist >= MIN_POINTS_PER_LIST)

    index = FaissVectorStore(DIM)
    assert index.spec == "auto" and len(index) == 0
    index.add(np.arange(100), unit_vectors(100))
    assert index.spec == "Flat"


def test_rescore_returns_exact_scores(corpus):
    ids, vectors = corpus
    index = built("IVF16,PQ8x8", corpus)
    by_id = dict(zip(ids.tolist(), vectors.astype(np.float32)))
    queries = unit_vectors(20, seed=2)
    scores, found = index.search(
        queries, 5, params={"nprobe": 16}, rescore_vectors=lambda wanted: np.stack([by_id[i] for i in wanted.tolist()])
    )
    exact = np.einsum("qkd,qd->qk", np.stack([[by_id[i] for i in row] for row in found.tolist()]), queries)
    np.testing.assert_allclose(scores, exact, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    approx, _ = index.search(queries, 5, params={"nprobe": 16})
    assert not np.allclose(approx, scores, atol=1e-3)  # PQ scores differ; rescoring replaced them
    with pytest.raises(InvalidInputError, match="rescore_vectors returned shape"):
        index.search(queries, 5, rescore_vectors=lambda wanted: np.zeros((1, DIM)))


def test_damaged_files_raise_index_format_error(corpus, tmp_path):
    path = tmp_path / "vectors.faiss"
    built("IVF16,Flat", corpus).save(path)
    data = path.read_bytes()
    for name, payload in [("truncated", data[: len(data) // 2]), ("garbage", b"not a faiss index" * 8), ("empty", b"")]:
        bad = tmp_path / f"{name}.faiss"
        bad.write_bytes(payload)
        for mmap in (True, False):
            with pytest.raises(IndexFormatError, match="rebuild the index") as err:
                FaissVectorStore.open(bad, mmap=mmap)
            assert str(bad) in str(err.value)
    with pytest.raises(IndexFormatError, match="no index file"):
        FaissVectorStore.open(tmp_path / "missing.faiss")
