"""An index on Milvus (milvus-lite embedded, and milvus-lite server mode as a Milvus server is reached): the same
answers as on FAISS, chunks read from the collection, versions as collections behind an alias, hot swap, and a
clear error for each bad target."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepseek_rag import DocumentIndex, Document, IndexHandle
from deepseek_rag.cli import cli
from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig
from deepseek_rag.errors import EncoderMismatchError, IndexSpecError, InvalidInputError
from deepseek_rag.settings import IndexSettings
from deepseek_rag.storage.milvus_segments import MILVUS_FILE
from deepseek_rag.vectors.milvus import MilvusVectorStore
from deepseek_rag.vectors.milvus_connection import MilvusUnavailableError, milvus_client

WORDS = ("contract tenant landlord notice payment salt pressure insulin bridge rust zinc bees almond vaccine "
         "law court party clause term renewal breach damages fee invoice river mountain engine battery").split()


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32"))


def corpus(n: int = 24, seed: int = 0, prefix: str = "d") -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))).capitalize() + "."
                     for _ in range(rng.randint(2, 6))]
        text = ("# Heading %d\n\n" % i if i % 4 == 0 else "") + "  ".join(sentences) + ("\n\nTail words." if i % 3 else "")
        metadata = {"party": rng.choice(["acme", "beta", "gamma"]), "year": rng.choice([2020, 2021, 2022]),
                    "signed": rng.random() < 0.5, "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2)), "title": f"T{i}"}
        docs.append(Document(f"{prefix}{i}", text, metadata))
    return docs


def settings(uri: str | None = None, spec: str | None = None, collection: str | None = None, **extra) -> IndexSettings:
    data = {"chunking": {"max_tokens": 24, "overlap": 6, "min_tokens": 4}, **extra}
    if uri is not None:
        data["vector_store"] = {"backend": "milvus", "uri": uri, "collection": collection}
        data["index_spec"] = spec or "FLAT"
    else:
        data["index_spec"] = spec or "Flat"
    return IndexSettings.from_dict(data)


def collections(uri: str, prefix: str) -> list[str]:
    return sorted(n for n in milvus_client(uri).list_collections() if n.startswith(prefix))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir):
    """The same corpus indexed on FAISS (Flat) and on milvus-lite (FLAT), both saved and loaded again."""
    from deepseek_rag.testing import release_milvus_lite

    folder = tmp_path_factory.mktemp("milvus-vs-faiss")
    uri = f"milvus://{folder / 'm.db'}"
    enc = DualEncoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32"))
    docs = corpus()
    DocumentIndex.build(docs, enc, settings()).save(folder / "faiss.idx")
    DocumentIndex.build(docs, enc, settings(uri)).save(folder / "milvus.idx")
    yield docs, DocumentIndex.load(folder / "faiss.idx", enc), DocumentIndex.load(folder / "milvus.idx", enc), uri
    release_milvus_lite(folder / "m.db")


def test_the_milvus_index_answers_as_the_faiss_one(built, encoder):
    docs, faiss_index, milvus_index = built[:3]
    assert milvus_index.info()["index_spec"] == "milvus:FLAT" and len(milvus_index) == len(docs)
    assert milvus_index.info()["chunks"] == faiss_index.info()["chunks"]
    queries = ["tenant notice payment", "salt pressure insulin", "zinc rust bridge", "court breach damages"]
    vectors = encoder.encode_queries(queries)
    a, b = faiss_index.search_vectors(vectors, 8), milvus_index.search_vectors(vectors, 8)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    a, b = faiss_index.search_sparse(queries, 8), milvus_index.search_sparse(queries, 8)
    np.testing.assert_array_equal(a[1], b[1])  # the same BM25 side: same analysis, same statistics
    for mode in ("dense", "hybrid"):
        left = faiss_index.as_retriever(top_k=5, mode=mode, expand_neighbors=1).retrieve_batch(queries)
        right = milvus_index.as_retriever(top_k=5, mode=mode, expand_neighbors=1).retrieve_batch(queries)
        for x, y in zip(left, right):
            assert [(h.doc_id, h.start, h.end, h.text) for h in x] == [(h.doc_id, h.start, h.end, h.text) for h in y]
            np.testing.assert_allclose([h.score for h in x], [h.score for h in y], atol=1e-5)


@pytest.mark.parametrize("filters", [
    {"party": "acme"}, {"year": {"$gte": 2021}, "signed": True}, {"tags": {"$contains": "b"}},
    {"$or": [{"party": "beta"}, {"year": 2020}]}, {"party": {"$ne": "acme"}}, {"doc_id": {"$in": ["d1", "d5", "d9"]}},
])
def test_filters_run_inside_the_milvus_search_and_match_faiss(built, encoder, filters, monkeypatch):
    _, faiss_index, milvus_index = built[:3]
    vectors = encoder.encode_queries(["tenant notice payment", "zinc rust bridge"])
    seen = []
    search = MilvusVectorStore.search

    def spy(self, queries, k, **options):
        seen.append(options.get("filter"))
        return search(self, queries, k, **options)

    monkeypatch.setattr(MilvusVectorStore, "search", spy)
    a, b = faiss_index.search_vectors(vectors, 6, filters=filters), milvus_index.search_vectors(vectors, 6, filters=filters)
    np.testing.assert_array_equal(a[1], b[1])
    assert seen and all(type(f).__name__ == "MetadataFilter" for f in seen)  # the filter itself, not a list of ids


def test_chunks_documents_and_spans_come_from_the_collection(built):
    docs, faiss_index, milvus_index = built[:3]
    rng = random.Random(1)
    for doc in docs:
        assert milvus_index.get_document(doc.id).text == doc.text
        assert milvus_index.get_document(doc.id).metadata == faiss_index.get_document(doc.id).metadata
        for _ in range(3):
            start = rng.randrange(0, len(doc.text))
            end = rng.randrange(start, len(doc.text) + 1)
            assert milvus_index.store.document_span(doc.id, start, end) == doc.text[start:end]
        assert [c.text for c in milvus_index.store.chunks_of(doc.id)] == [c.text for c in faiss_index.store.chunks_of(doc.id)]
    assert milvus_index.document_ids() == faiss_index.document_ids()
    assert milvus_index.snapshot().metadata_keys() == faiss_index.snapshot().metadata_keys()
    most = max(len(faiss_index.store.chunks_of(d.id)) for d in docs)
    assert milvus_index.snapshot().most_chunks_per_document() == faiss_index.snapshot().most_chunks_per_document() == most
    segment = milvus_index.snapshot().states[0].segment
    folder_files = sorted(p.name for p in segment.path.iterdir())
    assert MILVUS_FILE in folder_files and "chunks.sqlite" not in folder_files and "vectors.faiss" not in folder_files


def test_deletes_by_id_and_by_document_on_the_store(milvus_lite_uri, encoder, tmp_path):
    index = DocumentIndex.build(corpus(6), encoder, settings(milvus_lite_uri, collection="deletes"))
    index.save(tmp_path / "i.idx")
    store = index.snapshot().states[0].segment.vectors
    first = index.store.chunks_of("d0")
    assert store.delete_documents(["d0"]) == len(first)
    assert store.remove(np.asarray([c.id for c in index.store.chunks_of("d1")][:1])) == 1
    vectors = encoder.encode_queries(["tenant"])
    _, ids = store.search(vectors, 50)
    assert not set(ids.ravel()) & {c.id for c in first}


def test_versions_are_collections_behind_an_alias_and_old_ones_are_dropped(milvus_lite_uri, encoder, tmp_path):
    path = tmp_path / "v.idx"
    st = settings(milvus_lite_uri, collection="ver", versions={"keep_versions": 1, "merge_factor": 3})
    index = DocumentIndex.build(corpus(8), encoder, st)
    index.save(path)
    client = milvus_client(milvus_lite_uri)
    assert collections(milvus_lite_uri, "ver") == ["ver_g000001"]
    assert client.describe_alias("ver")["collection_name"] == "ver_g000001"
    handle = IndexHandle(path, encoder)
    retriever = handle.as_retriever(top_k=3, mode="dense")

    writer = DocumentIndex.load(path, encoder)
    writer.add_documents(corpus(3, seed=5, prefix="new"))
    writer.save()  # version 2: a second segment, in a collection of its own
    assert collections(milvus_lite_uri, "ver") == ["ver_g000001", "ver_g000002"]
    with handle.reading() as old:  # a search that started on version 1 finishes on it
        assert handle.refresh() and handle.version == 2
        found = old.get_chunks(old.search_vectors(encoder.encode_queries(["x"]), 40)[1][0].tolist())
        assert found and "new0" not in {c.doc_id for c in found.values()}
    hits = retriever.retrieve(corpus(3, seed=5, prefix="new")[0].text)
    assert hits[0].doc_id == "new0"

    writer.delete_documents(["d0"])
    writer.save()  # version 3: a deletion marker, no new collection
    assert handle.refresh() and "d0" not in handle.snapshot().document_ids()
    writer.add_documents(corpus(2, seed=9, prefix="more"))
    writer.save()  # three small segments of one tier merge (merge_factor 3): a new collection, old ones dropped
    names = collections(milvus_lite_uri, "ver")
    record = json.loads((path / "manifest.json").read_text())
    assert names == sorted(s["collection"] for s in record["segments"])  # keep_versions=1: only the current ones
    assert client.describe_alias("ver")["collection_name"] in names
    assert handle.refresh()
    assert sorted(handle.snapshot().document_ids()) == sorted(d for d in writer.document_ids())
    handle.close()


def test_overwrite_is_a_blue_green_rebuild(milvus_lite_uri, encoder, tmp_path):
    path = tmp_path / "bg.idx"
    st = settings(milvus_lite_uri, collection="bg", versions={"keep_versions": 1})
    DocumentIndex.build(corpus(5), encoder, st).save(path)
    handle = IndexHandle(path, encoder)
    DocumentIndex.build(corpus(7, seed=3, prefix="b"), encoder, st).save(path, overwrite=True)
    assert milvus_client(milvus_lite_uri).describe_alias("bg")["collection_name"] == "bg_g000002"
    assert collections(milvus_lite_uri, "bg") == ["bg_g000002"]  # the old one went with its version
    assert handle.refresh() and sorted(handle.snapshot().document_ids())[0] == "b0"
    handle.close()


def test_bm25_postings_are_rebuilt_from_the_collection_when_absent(built, encoder, tmp_path):
    _, _, milvus_index, _ = built
    copy = tmp_path / "copy.idx"
    shutil.copytree(milvus_index.path, copy, ignore=shutil.ignore_patterns("writer.lock"))
    for postings in copy.glob("segments/*/postings"):
        shutil.rmtree(postings)
    reopened = DocumentIndex.load(copy, encoder, writable=False)
    queries = ["tenant notice payment", "zinc rust bridge"]
    np.testing.assert_array_equal(reopened.search_sparse(queries, 6)[1], milvus_index.search_sparse(queries, 6)[1])


def test_an_ivf_sq8_index_is_built_per_segment(milvus_lite_uri, encoder, tmp_path):
    index = DocumentIndex.build(corpus(30), encoder, settings(milvus_lite_uri, spec="IVF_SQ8", collection="ivf"))
    index.save(tmp_path / "ivf.idx")
    store = index.snapshot().states[0].segment.vectors
    described = milvus_client(milvus_lite_uri).describe_index("ivf_g000001", "vector")
    assert described["index_type"] == "IVF_SQ8" and store.build_params["nlist"] >= 1
    from deepseek_rag.vectors.specs import suggest_nlist

    assert store.build_params["nlist"] == suggest_nlist(len(store))  # sized to this segment, as FAISS picks it
    queries = encoder.encode_queries(["tenant notice", "rust bridge"])
    ids = store.ids
    truth = ids[np.argsort(-(queries @ store.fetch(ids).T), axis=1)[:, :5]]
    _, found = index.search_vectors(queries, 5, nprobe=store.build_params["nlist"])  # every list: exact up to SQ8
    assert np.mean([len(set(a) & set(b)) for a, b in zip(found, truth)]) >= 4


def test_a_large_batch_goes_in_blocks_and_brings_back_ids_only(built, encoder, monkeypatch):
    """A batch search asks Milvus for ids only (not every field) and splits into blocks; same answer either way."""
    import deepseek_rag.vectors.milvus as milvus_module

    _, faiss_index, milvus_index = built[:3]
    store = milvus_index.snapshot().states[0].segment.vectors
    vectors = encoder.encode_queries([f"tenant notice {w}" for w in WORDS])
    calls = []
    real_search = store.client.search
    monkeypatch.setattr(store.client, "search", lambda *a, **kw: calls.append(kw) or real_search(*a, **kw))
    monkeypatch.setattr(milvus_module, "SEARCH_HITS_PER_CALL", 40)
    scores, ids = store.search(vectors, 8)
    assert len(calls) == -(-len(WORDS) // 5) and all(call["output_fields"] == ["id"] for call in calls)
    expected = faiss_index.search_vectors(vectors, 8)
    np.testing.assert_array_equal(ids, expected[1])
    np.testing.assert_allclose(scores, expected[0], atol=1e-5)


def test_a_search_past_its_deadline_is_a_clear_error(built, encoder):
    store = built[2].snapshot().states[0].segment.vectors
    timeout, store.timeout = store.timeout, 1e-4
    try:
        with pytest.raises(MilvusUnavailableError, match="did not answer search .* within 0.0001s"):
            store.search(encoder.encode_queries(["tenant notice"] * 64), 8)
    finally:
        store.timeout = timeout


# ------------------------------------------------------------------------------------------------ bad input
def test_an_unreachable_milvus_is_a_clear_error_within_the_timeout(encoder, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    index = DocumentIndex(encoder, IndexSettings.from_dict({**settings(uri).to_dict(),
                                                             "vector_store": {"backend": "milvus", "uri": uri, "timeout": 2}}))
    started = time.monotonic()
    with pytest.raises(MilvusUnavailableError, match=f"cannot reach Milvus at {uri} within 2s"):
        index.check_vector_store(tmp_path / "x.idx")
    assert time.monotonic() - started < 5


def test_a_collection_of_another_dimension_or_encoder_is_refused(milvus_lite_uri, encoder, tmp_path, tiny_model_dir):
    from deepseek_rag.testing import build_tiny_model

    DocumentIndex.build(corpus(4), encoder, settings(milvus_lite_uri, collection="shared")).save(tmp_path / "a.idx")
    wider = DualEncoder(EncoderConfig(model=str(build_tiny_model(tmp_path / "wide", hidden_size=48))))
    with pytest.raises(EncoderMismatchError, match="holds 32-d vectors.*makes 48-d vectors"):
        DocumentIndex(wider, settings(milvus_lite_uri, collection="shared")).check_vector_store(tmp_path / "b.idx")
    other = DualEncoder(EncoderConfig(model=str(build_tiny_model(tmp_path / "other", seed=1))))
    with pytest.raises(EncoderMismatchError, match="base_fingerprint"):
        DocumentIndex(other, settings(milvus_lite_uri, collection="shared")).check_vector_store(tmp_path / "c.idx")
    with pytest.raises(InvalidInputError, match="belongs to another index directory"):
        DocumentIndex(encoder, settings(milvus_lite_uri, collection="shared")).check_vector_store(tmp_path / "d.idx")
    assert collections(milvus_lite_uri, "shared") == ["shared_g000001"]  # nothing was touched


def test_an_index_type_the_target_cannot_build_is_an_error_at_build_time(milvus_lite_uri, encoder, tmp_path):
    with pytest.raises(IndexSpecError, match="cannot build index type IVF_PQ"):
        DocumentIndex(encoder, settings(milvus_lite_uri, spec="IVF_PQ,m=4")).check_vector_store(tmp_path / "pq.idx")
    with pytest.raises(IndexSpecError, match="FAISS factory string"):
        settings(milvus_lite_uri, spec="IVF256,SQ8")


def test_the_flush_release_reload_trap_is_caught(milvus_lite_uri):
    """milvus-lite accepts IVF_PQ, searches unflushed rows by brute force and describe_index echoes IVF_PQ: only
    building it (flush, release, load) shows it cannot. finish() does that and refuses."""
    store = MilvusVectorStore.create(milvus_lite_uri, "trap", 8, "IVF_PQ,nlist=4,m=2", rows=200)
    vectors = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.add(np.arange(1, 201), vectors)
    assert store.search(vectors[:1], 1)[1][0, 0] == 1  # brute force over the unflushed rows: looks fine
    assert milvus_client(milvus_lite_uri).describe_index("trap", "vector")["index_type"] == "IVF_PQ"  # and says IVF_PQ
    with pytest.raises(IndexSpecError, match="cannot build it"):
        store.finish()


def test_an_embedded_file_another_process_holds_names_the_way_out(tmp_path):
    path = tmp_path / "held.db"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pymilvus import MilvusClient; c = MilvusClient(uri=sys.argv[1]); c.list_collections(); "
        "print('ready', flush=True); time.sleep(60)"), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(MilvusUnavailableError, match="one process.*milvus-lite server --data-dir"):
            milvus_client(f"milvus://{path}", timeout=5)
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------------------------ server mode, CLI
def test_server_mode_shares_one_index_between_processes(milvus_server, tiny_model_dir, tmp_path):
    """A writer process adds documents through `deepseek-rag add` while this process serves the index with a
    watching IndexHandle — the replica story, on milvus-lite server mode."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.txt").write_text("The tenant may terminate the lease with ninety days notice.", encoding="utf-8")
    runner = CliRunner()
    path = tmp_path / "served.idx"
    result = runner.invoke(cli, ["index", str(docs), "--out", str(path), "--vectors", milvus_server, "--collection",
                                 "served", "--model", str(tiny_model_dir), "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert "milvus:FLAT" in result.output
    handle = IndexHandle(path, watch=0.2)
    more = tmp_path / "more"
    more.mkdir()
    (more / "second.txt").write_text("Zinc coatings protect steel bridges from rust.", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "deepseek_rag.cli", "add", str(path), str(more)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 20
    while handle.version != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.version == 2 and "second.txt" in handle.snapshot().document_ids()
    handle.close()


def test_cli_index_query_and_errors(milvus_lite_uri, tiny_model_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, doc in enumerate(corpus(6)):
        (docs / f"{doc.id}.txt").write_text(doc.text, encoding="utf-8")
    runner = CliRunner()
    base = ["--model", str(tiny_model_dir), "--dtype", "float32"]
    out = tmp_path / "cli.idx"
    result = runner.invoke(cli, ["index", str(docs), "--out", str(out), "--vectors", milvus_lite_uri,
                                 "--collection", "cli_idx", "--index-spec", "HNSW,M=8", *base])
    assert result.exit_code == 0, result.output
    assert "milvus:HNSW,M=8" in result.output
    result = runner.invoke(cli, ["query", str(out), "tenant notice", "--top-k", "2"])
    assert result.exit_code == 0 and "1. d" in result.output, result.output
    cases = [
        (["--vectors", milvus_lite_uri, "--index-spec", "IVF_PQ"], "cannot build index type IVF_PQ"),
        (["--vectors", f"http://127.0.0.1:{free_port()}"], "cannot reach Milvus"),
        (["--collection", "x"], "give --vectors URI as well"),
        (["--vectors", milvus_lite_uri, "--collection", "bad-name"], "collection name 'bad-name'"),
        (["--vectors", "milvus:///nowhere/x.txt"], "must end in .db"),
    ]
    for extra, message in cases:
        result = runner.invoke(cli, ["index", str(docs), "--out", str(tmp_path / "bad.idx"), *extra, *base])
        assert result.exit_code != 0 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "bad.idx").exists()
