"""Two-level specs (``...,Refine(SQ8)``): compact first pass, re-ranking codes memory-mapped from the segment's
files, search knobs chosen at build time for a recall target; through the store and through an index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import re
import textwrap
import zlib

import faiss
import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexFormatError, IndexSettings, InvalidInputError
from deepseek_rag.ingest.chunking import ChunkingConfig
from deepseek_rag.vectors.base import IdFilter
from deepseek_rag.vectors.calibration import VectorSearchSettings, calibrate
from deepseek_rag.vectors.faiss_store import FaissVectorStore
from deepseek_rag.vectors.refine import refine_path

DIM = 32
N = 3000
SPEC = "IVF16,PQ8x4fs,Refine(SQ8)"


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 centres: neighbours exist, as in real embeddings."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((40, DIM))
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(N, dtype=np.int64) * 3 + 1, clustered(N, 0)


def built(spec: str, corpus) -> FaissVectorStore:
    store = FaissVectorStore(DIM, spec)
    store.add(*corpus)
    return store


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / truth.shape[1] for f, t in zip(found, truth)]))


def exact(corpus, queries: np.ndarray, k: int) -> np.ndarray:
    ids, vectors = corpus
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def test_re_ranking_lifts_recall_and_gives_the_finer_codes_scores(corpus):
    ids, vectors = corpus
    queries = clustered(200, 1)
    truth = exact(corpus, queries, 10)
    first_pass = built("IVF16,PQ8x4fs", corpus).search(queries, 10, params={"nprobe": 16})[1]
    two_level = built("IVF16,PQ8x4fs,RFlat", corpus)
    assert two_level.refined and two_level.spec == "IVF16,PQ8x4fs,RFlat" and two_level.k_factor == 8
    scores, found = two_level.search(queries, 10, params={"nprobe": 16})
    assert recall(first_pass, truth) < 0.8 <= 0.97 <= recall(found, truth)
    by_id = dict(zip(ids.tolist(), vectors))
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", np.stack([[by_id[i] for i in r] for r in found.tolist()]),
                                                 queries), atol=1e-5)  # exact codes: exact scores
    shallow = two_level.search(queries, 10, params={"nprobe": 16, "k_factor": 1})[1]
    assert recall(shallow, truth) < recall(found, truth)  # the knob reaches the re-ranking
    with pytest.raises(InvalidInputError, match="k_factor must be a positive int"):
        two_level.search(queries, 10, params={"k_factor": 0})
    np.testing.assert_allclose(two_level.fetch(ids[[7, 3]]), vectors[[7, 3]], atol=1e-6)  # fast-scan, yet fetchable


def test_codes_live_in_a_mapped_file_beside_the_index_and_survive_removes(corpus, tmp_path):
    ids, vectors = corpus
    store = built(SPEC, corpus)
    assert store.remove(ids[:10]) == 10 and store.remove(ids[10:20]) == 10 and store.remove(ids[:5]) == 0
    store.add(ids[:5], vectors[:5])
    queries = vectors[20:80]
    before = store.search(queries, 5, params={"nprobe": 4})
    path = tmp_path / "vectors.faiss"
    store.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss", "vectors.refine"]
    assert store.nbytes() == path.stat().st_size + refine_path(path).stat().st_size
    opened = FaissVectorStore.open(path)
    assert opened.spec == SPEC and len(opened) == N - 15 and opened._refine.source == str(refine_path(path))
    # RAM holds the compact codes; the SQ8 codes (32 B a vector here) stay in the mapped file
    assert opened.ram_nbytes() <= store.ram_nbytes() - (N - 15) * 32
    after = opened.search(queries, 5, params={"nprobe": 4})
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    assert (after[1][:, 0] == ids[20:80]).all()
    assert opened.remove(ids[20:22]) == 2  # a mapped file is copied, never written
    assert len(FaissVectorStore.open(path)) == N - 15
    excluded = opened.search(queries[2:4], 1, filter=IdFilter.of(excluded=ids[22:24]), params={"nprobe": 16})[1]
    assert not np.isin(excluded, ids[20:24]).any()


def test_merging_moves_the_codes_with_the_lists_and_drops_deleted_ones(corpus, tmp_path):
    ids, vectors = corpus
    template = FaissVectorStore(DIM, SPEC)
    template.train(vectors)
    first, second = template.empty_like(), template.empty_like()
    first.add(ids[:1000], vectors[:1000])
    second.add(ids[1000:], vectors[1000:])
    first.save(tmp_path / "a.faiss")
    mapped = FaissVectorStore.open(tmp_path / "a.faiss")
    merged = FaissVectorStore.merged(template, [(mapped, ids[:100]), (second, ids[1000:1050])])
    assert len(merged) == N - 150 and len(merged._refine) == N - 150
    _, found = merged.search(vectors[100:1100], 1, params={"nprobe": 16, "k_factor": 64})  # 4-byte first-pass codes
    keep = ~np.isin(ids[100:1100], ids[1000:1050])
    assert (found[keep, 0] == ids[100:1100][keep]).mean() > 0.99
    np.testing.assert_allclose(merged.fetch(ids[[200, 2000]]), vectors[[200, 2000]], atol=0.02)


def test_a_refine_file_that_does_not_match_its_index_is_a_clear_error(corpus, tmp_path):
    ids, vectors = corpus
    built(SPEC, corpus).save(tmp_path / "a.faiss")
    other = FaissVectorStore(DIM, SPEC)
    other.add(ids[:500] + 1, vectors[:500])
    other.save(tmp_path / "b.faiss")
    good = refine_path(tmp_path / "a.faiss").read_bytes()
    cases = {
        "other index": refine_path(tmp_path / "b.faiss").read_bytes(),
        "truncated": good[: len(good) - 100],
        "not ours": b"garbage" * 100,
        "newer": good.replace(b'"format_version": 1', b'"format_version": 9', 1),
    }
    for name, payload in cases.items():
        refine_path(tmp_path / "a.faiss").write_bytes(payload)
        with pytest.raises(IndexFormatError, match="rebuild the index|Upgrade deepseek-rag") as err:
            FaissVectorStore.open(tmp_path / "a.faiss")
        assert "a.refine" in str(err.value), name
    FaissVectorStore(DIM, "IVF16,Flat").empty_like().save(tmp_path / "a.faiss")  # a one-level save drops the stale file
    assert not refine_path(tmp_path / "a.faiss").exists()


def test_calibration_picks_the_cheapest_setting_that_reaches_the_target(corpus):
    ids, vectors = corpus
    store = built(SPEC, corpus)
    chosen = calibrate([store], ids, vectors, VectorSearchSettings(recall_target=0.9, calibration_queries=200))
    assert chosen["recall@10"] >= 0.9 and chosen["queries"] == 200 and chosen["target"] == 0.9
    held = np.sort(np.random.default_rng(0).choice(N, 200, replace=False))  # the same held-out rows

    def measured(nprobe, k_factor):
        truth = exact((np.delete(ids, held), np.delete(vectors, held, 0)), vectors[held], 10)
        found = store.search(vectors[held], 10, filter=IdFilter.of(excluded=ids[held]),
                             params={"nprobe": nprobe, "k_factor": k_factor})[1]
        return recall(found, truth)

    assert measured(chosen["nprobe"], chosen["k_factor"]) == pytest.approx(chosen["recall@10"])
    if chosen["nprobe"] > 1:  # fewer lists at the same depth miss the target
        assert measured(chosen["nprobe"] // 2, chosen["k_factor"]) < 0.9
    one_level = built("IVF16,Flat", corpus)
    plain = calibrate([one_level], ids, vectors, VectorSearchSettings(recall_target=0.99))
    assert plain["k_factor"] is None and plain["recall@10"] >= 0.99
    assert calibrate([built("Flat", corpus)], ids, vectors) is None  # nothing to choose
    assert calibrate([store], ids[:100], vectors[:100]) is None  # too few to hold some out


def test_an_unreachable_target_takes_the_cheapest_setting_near_the_best_and_says_so(corpus, caplog):
    ids, vectors = corpus
    store = built("IVF16,PQ4x4fs,Refine(PQ4x4)", corpus)  # coarse re-ranking codes: never 0.999
    chosen = calibrate([store], ids, vectors, VectorSearchSettings(recall_target=0.999, calibration_queries=100))
    assert chosen["recall@10"] < 0.999 and chosen["recall@10"] >= chosen["ceiling"] - 0.005
    assert (chosen["nprobe"], chosen["k_factor"]) != (16, 32)  # not every list at the deepest re-ranking
    assert "reaches Recall@10" in caplog.text and "cheapest setting within" in caplog.text


@pytest.mark.parametrize("field, value", [("recall_target", 0), ("recall_target", 1.5), ("nprobe", 0), ("k_factor", "8"),
                                          ("calibration_queries", True)])
def test_search_settings_are_validated(field, value):
    with pytest.raises(InvalidInputError, match=f"VectorSearchSettings.{field}"):
        VectorSearchSettings(**{field: value})


# ------------------------------------------------------------------------------------------- through an index
def notes(prefix: str, n: int, version: int = 0) -> list[Document]:
    topics = ["roof repairs", "rent due dates", "parking spaces", "pet policy", "noise at night", "heating in winter"]
    return [Document(f"{prefix}-{i}", f"Note {i} (v{version}) about {topics[i % 6]} and item {i * 7 % 31}, filed as "
                                      f"{prefix}{i}v{version}.") for i in range(n)]


class BagOfWordsEncoder(DualEncoder):
    """The tiny model's tokenizer and fingerprint, with vectors that sum a fixed random vector per word: texts
    sharing words are near, as with a trained model (a random-init model maps every text to about one point)."""

    def _vectors(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row] += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_documents(self, texts, *, batch_size=None, progress=None):  # noqa: D102 - see the class docstring
        return self._vectors(texts)

    def encode_queries(self, texts, *, batch_size=None, progress=None):  # noqa: D102
        return self._vectors(texts)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return BagOfWordsEncoder(model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def two_level_dir(encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-level") / "idx"
    settings = IndexSettings(index_spec="IVF8,PQ16x4fs,Refine(SQ8)", chunking=ChunkingConfig(max_tokens=128, overlap=8),
                             vector_search=VectorSearchSettings(recall_target=0.9))
    settings.versions.merge_factor = 2
    DocumentIndex.build(notes("n", 400), encoder, settings).save(folder)
    return folder


def test_an_index_records_its_calibrated_knobs_and_searches_with_them(two_level_dir, encoder):
    record = json.loads((two_level_dir / "manifest.json").read_text())
    vectors = record["vectors"]
    calibration = vectors["calibration"]
    assert vectors["spec"] == "IVF8,PQ16x4fs,Refine(SQ8)" and calibration["recall@10"] >= 0.9
    assert vectors["params"] == {"nprobe": calibration["nprobe"], "k_factor": calibration["k_factor"]}
    segment = record["segments"][0]
    assert "vectors.refine" in segment["files"]
    assert sorted(p.name for p in (two_level_dir / "trained").iterdir()) == ["t000001.faiss", "t000001.refine"]
    index = DocumentIndex.load(two_level_dir, encoder, writable=False)
    assert index.info()["vector_search"]["nprobe"] == calibration["nprobe"]
    info = index.info()
    assert all(s.segment.vectors._refine.source for s in index.snapshot().states)  # the SQ8 codes stay on disk
    assert info["vector_ram_bytes"] < info["index_bytes"] - info["chunks"] * DIM / 2
    searched = []
    for state in index.snapshot().states:
        real = state.segment.vectors.search
        state.segment.vectors.search = lambda *a, _real=real, **kw: (searched.append(kw["params"]), _real(*a, **kw))[1]
    hit = index.as_retriever(top_k=3, mode="dense").retrieve(notes("n", 400)[17].text)[0]
    assert hit.doc_id == "n-17"
    assert searched[0] == {"nprobe": calibration["nprobe"], "k_factor": calibration["k_factor"]}
    index.as_retriever(top_k=3, mode="dense", nprobe=1).retrieve("roof")  # a search's own knob wins
    assert searched[-1]["nprobe"] == 1


def test_deletes_upserts_and_merges_keep_the_codes_with_their_chunks(two_level_dir, encoder, tmp_path):
    folder = tmp_path / "idx"
    shutil.copytree(two_level_dir, folder)
    index = DocumentIndex.load(folder, encoder)
    index.delete_documents([f"n-{i}" for i in range(0, 400, 5)])
    index.save()
    for version in (1, 2, 3):  # merge_factor 2: these publishes merge segments
        index.upsert_documents(notes("n", 400, version)[1 + version : 400 : 7])
        index.add_documents(notes(f"extra{version}", 30))
        index.save()
    reopened = DocumentIndex.load(folder, encoder, writable=False)
    record = json.loads((folder / "manifest.json").read_text())
    assert len(record["segments"]) < 8 and all("vectors.refine" in s["files"] for s in record["segments"])
    assert {p.name for p in (folder / "trained").iterdir()} == {"t000001.faiss", "t000001.refine"}
    retriever = reopened.as_retriever(top_k=1, mode="dense")
    # n-1 as built; n-4 upserted last (i % 7 == 4), n-17 in between; n-15 deleted (i % 5 == 0), never upserted
    for doc in [notes("n", 400)[1], notes("n", 400, 3)[4], notes("n", 400, 2)[17], notes("extra2", 30)[11]]:
        assert retriever.retrieve(doc.text)[0].doc_id == doc.id
    gone = retriever.retrieve(notes("n", 400)[15].text, filters={"doc_id": "n-15"})
    assert gone == []  # deleted: never returned, however close
    for state in reopened.snapshot().states:
        store = state.segment.vectors
        assert store.refined and len(store._refine) == len(store)


READER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[4])
    from deepseek_rag import DocumentIndex
    from test_two_level_index import BagOfWordsEncoder
    index = DocumentIndex.load(sys.argv[1], BagOfWordsEncoder(model=sys.argv[2]), writable=False)
    hit = index.as_retriever(top_k=1, mode="dense").retrieve(sys.argv[3])[0]
    print(json.dumps({"doc": hit.doc_id, "spec": index.info()["index_spec"]}))
""")


def test_a_two_level_index_on_a_read_only_mount_still_searches(two_level_dir, tiny_model_dir, tmp_path):
    target = tmp_path / "ro"
    shutil.copytree(two_level_dir, target)
    prefix = [] if os.geteuid() != 0 else [
        "unshare", "-m", "sh", "-c", f'mount --bind "{target}" "{target}" && mount -o remount,bind,ro "{target}" && exec "$@"', "sh"]
    if os.geteuid() != 0:
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    done = subprocess.run([*prefix, sys.executable, "-c", READER, str(target), str(tiny_model_dir), notes("n", 400)[33].text,
                           os.path.dirname(__file__)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"doc": "n-33", "spec": "IVF8,PQ16x4fs,Refine(SQ8)"}


def test_a_crash_while_the_codes_are_renamed_keeps_the_old_version(two_level_dir, encoder, tmp_path,
                                                                  save_crashing_at_rename):
    folder = tmp_path / "idx"
    shutil.copytree(two_level_dir, folder)
    index = DocumentIndex.load(folder, encoder)
    index.add_documents(notes("late", 5))
    save_crashing_at_rename(index, f"vectors.refine.tmp-{os.getpid()}")
    reopened = DocumentIndex.load(folder, encoder, writable=False)
    assert reopened.version == 1 and not reopened.snapshot().has_document("late-0")
    assert reopened.as_retriever(top_k=1, mode="dense").retrieve(notes("n", 400)[8].text)[0].doc_id == "n-8"


def test_eval_re_indexes_an_existing_index_under_another_spec_and_leaves_it_alone(two_level_dir, tmp_path):
    from click.testing import CliRunner

    from deepseek_rag.cli import cli

    docs = notes("n", 400)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d.id, "text": d.text}) for d in docs))
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": docs[i].text}) for i in range(5)))
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tn-{i}\t1\n" for i in range(5)))
    before = (two_level_dir / "manifest.json").read_text()
    args = ["eval", "--data", str(tmp_path), "--index", str(two_level_dir), "--mode", "dense", "--json"]
    result = CliRunner().invoke(cli, [*args, "--index-spec", "IVF8,Flat", "--recall-target", "0.95"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["index_spec"] == "IVF8,Flat" and metrics["vector_search"]["calibration"]["target"] == 0.95
    assert metrics["vector_ram_bytes"] > 0 and metrics["chunks"] == 400
    bad = CliRunner().invoke(cli, [*args, "--index-spec", "IVF8,PQ16x4fs,Refine(Foo)"])
    assert bad.exit_code == 1 and bad.output.startswith("Error:") and "Refine(Foo)" in bad.output, bad.output
    assert (two_level_dir / "manifest.json").read_text() == before
