"""Distributed ingestion on a real Dask LocalCluster of 2 worker processes: the same chunks and vectors as a
single-process build, on FAISS and on Milvus; a worker killed mid-run is retried; a bad document is reported
while the rest are indexed; an address with no scheduler is a clear error."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
from test_milvus_index import corpus, settings

from deepseek_rag import Document, DocumentIndex
from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig
from deepseek_rag.errors import InvalidInputError
from click.testing import CliRunner

from deepseek_rag.cli import cli
from deepseek_rag.ingest.distributed import DaskUnavailableError, parse_address, prepare_on_dask, split


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(local)
    yield local, client
    client.close()
    local.close()


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32"))


def rows(index: DocumentIndex) -> list[tuple]:
    return [(c.id, c.doc_id, c.ordinal, c.start, c.end, c.text) for batch in index.store.iter_chunks() for c in batch]


def vectors_of(index: DocumentIndex) -> tuple[np.ndarray, np.ndarray]:
    segment = index.snapshot().states[0].segment
    ids = segment.vectors.ids
    return ids, segment.vectors.fetch(ids)


def assert_same_build(single: DocumentIndex, distributed: DocumentIndex) -> None:
    assert single.info()["chunks"] == distributed.info()["chunks"]
    assert rows(single) == rows(distributed)  # same chunks, same ids, same offsets
    a_ids, a = vectors_of(single)
    b_ids, b = vectors_of(distributed)
    np.testing.assert_array_equal(a_ids, b_ids)
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999


def test_dask_builds_what_one_process_builds(cluster, encoder):
    local, _ = cluster
    docs = corpus(30)
    st = settings(spec="Flat")
    single = DocumentIndex.build(docs, encoder, st)
    prepared = prepare_on_dask(docs, encoder, st, local.scheduler_address, partitions=6)
    assert prepared.partitions == 6 and not prepared.failures
    assert len(prepared.workers) == 2 and set(prepared.workers.values()) == {1}  # each worker loaded the encoder once
    distributed = DocumentIndex(encoder, st)
    distributed.add_prepared(prepared.batch, prepared.vectors)
    assert_same_build(single, distributed)
    assert distributed.search_sparse(["tenant notice"], 5)[1].tolist() == single.search_sparse(["tenant notice"], 5)[1].tolist()


def test_the_driver_trains_ivf_on_every_partition_and_writes_milvus(cluster, encoder, milvus_lite_uri, tmp_path):
    local, _ = cluster
    docs = corpus(30, seed=2)
    prepared = prepare_on_dask(docs, encoder, settings(spec="IVF4,Flat"), local.scheduler_address)
    ivf = DocumentIndex(encoder, settings(spec="IVF4,Flat"))
    ivf.add_prepared(prepared.batch, prepared.vectors)
    assert ivf.snapshot().template.is_trained and ivf.vectors.nlist == 4
    on_milvus = DocumentIndex(encoder, settings(milvus_lite_uri, collection="dask"))
    on_milvus.add_prepared(prepared.batch, prepared.vectors)
    on_milvus.save(tmp_path / "dask.idx")
    single = DocumentIndex.build(docs, encoder, settings())
    reopened = DocumentIndex.load(tmp_path / "dask.idx", encoder)
    assert rows(reopened) == rows(single)
    queries = encoder.encode_queries(["salt pressure", "zinc rust"])
    np.testing.assert_array_equal(reopened.search_vectors(queries, 5)[1], single.search_vectors(queries, 5)[1])


def test_a_bad_document_is_reported_and_the_rest_indexed(cluster, encoder):
    local, _ = cluster
    docs = corpus(10)
    docs.insert(4, Document("broken", "text with a lone surrogate \ud800 inside", {}))
    with pytest.raises(InvalidInputError, match="broken"):
        DocumentIndex.build(docs, encoder, settings())  # one process: the whole batch fails
    prepared = prepare_on_dask(docs, encoder, settings(), local.scheduler_address, partitions=3)
    assert [doc_id for doc_id, _ in prepared.failures] == ["broken"]
    assert "surrogate" in prepared.failures[0][1]
    assert [d.id for d in prepared.batch.documents] == [d.id for d in docs if d.id != "broken"]


def test_addresses_are_checked_and_a_silent_scheduler_is_a_clear_error(encoder):
    assert parse_address("local:3") == ("local", 3) and parse_address("tcp://10.0.0.5:8786")[0] == "remote"
    for bad in ("local:0", "http://x:1", "tcp://host", ""):
        with pytest.raises(InvalidInputError):
            parse_address(bad)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DaskUnavailableError, match=f"no Dask scheduler answers at tcp://127.0.0.1:{port} within 2s"):
        prepare_on_dask(corpus(2), encoder, settings(), f"tcp://127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - started < 8
    assert [len(p) for p in split(corpus(10), 3)] == [3, 4, 3]


def write_corpus(path, docs, extra: str = "") -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"_id": doc.id, "title": doc.metadata["title"], "text": doc.text}) + "\n")
        handle.write(extra)


def kill_a_busy_worker(client, pids: dict, seen: dict, seconds: float = 60) -> None:
    """Kill -9 the first worker seen processing a task; ``seen`` gets its address and the tasks it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = {worker: tasks for worker, tasks in client.processing().items() if tasks}
        if busy:
            seen["victim"] = victim = next(iter(busy))
            seen["held"] = list(busy[victim])
            os.kill(pids[victim], signal.SIGKILL)
            return
        time.sleep(0.01)


def test_cli_index_on_dask_into_milvus(cluster, tiny_model_dir, milvus_lite_uri, tmp_path):
    local, _ = cluster
    corpus_file = tmp_path / "corpus.jsonl"
    write_corpus(corpus_file, corpus(12), '{"_id": "bad", "text": "a lone surrogate \\ud800 here"}\n')
    out = tmp_path / "cli.idx"
    result = CliRunner().invoke(cli, ["index", str(corpus_file), "--out", str(out), "--dask", local.scheduler_address,
                                      "--vectors", milvus_lite_uri, "--model", str(tiny_model_dir), "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    # the loader already refuses the bad row (one line naming it); the other 12 are chunked on Dask and indexed
    assert "corpus.jsonl:13" in result.output and "U+D800" in result.output and "indexed 12 documents" in result.output
    assert DocumentIndex.load(out).info()["index_spec"] == "milvus:FLAT"
    result = CliRunner().invoke(cli, ["index", str(corpus_file), "--out", str(tmp_path / "x.idx"), "--dask", "local:0"])
    assert result.exit_code != 0 and "at least 1" in result.output and "Traceback" not in result.output


def test_a_worker_killed_mid_run_is_retried_and_the_build_completes(cluster, encoder, capsys):
    """Kill -9 a worker while it holds partitions; the scheduler reruns them elsewhere, and the build is the one a
    single process makes. (Last in this module: the cluster has a restarted worker afterwards.)"""
    local, client = cluster
    docs = corpus(40, seed=4)
    st = settings()
    single = DocumentIndex.build(docs, encoder, st)
    pids = client.run(os.getpid)
    outcome: dict = {}

    def build() -> None:
        try:
            outcome["prepared"] = prepare_on_dask(docs, encoder, st, local.scheduler_address, partitions=16)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=build)
    runner.start()
    seen: dict = {}
    kill_a_busy_worker(client, pids, seen)
    runner.join(timeout=180)
    assert "victim" in seen and not runner.is_alive()
    victim, held = seen["victim"], seen["held"]
    assert "error" not in outcome, outcome.get("error")
    prepared = outcome["prepared"]
    distributed = DocumentIndex(encoder, st)
    distributed.add_prepared(prepared.batch, prepared.vectors)
    assert_same_build(single, distributed)
    survivors = client.run(os.getpid)
    assert pids[victim] not in survivors.values()
    with capsys.disabled():
        print(f"\nkilled worker {victim} (pid {pids[victim]}) holding {len(held)} partition task(s); "
              f"the build completed: {len(prepared.batch.documents)} documents, {prepared.batch.chunk_count} chunks "
              f"from {prepared.partitions} partitions on workers {sorted(prepared.workers)}; chunks and vectors "
              "match the single-process build")


def test_a_partition_the_cluster_gives_up_on_is_a_clear_error_and_the_old_version_stays(tiny_model_dir, tmp_path):
    """With no retries allowed, killing a busy worker loses its partition: `index --overwrite` fails with one line
    and the index directory still holds its previous version, whole (the driver writes only after the gather)."""
    import dask
    from distributed import Client, LocalCluster

    corpus_file, out = tmp_path / "corpus.jsonl", tmp_path / "kept.idx"
    write_corpus(corpus_file, corpus(8, seed=5))
    model = ["--model", str(tiny_model_dir), "--dtype", "float32"]
    assert CliRunner().invoke(cli, ["index", str(corpus_file), "--out", str(out), *model]).exit_code == 0
    before = DocumentIndex.load(out)
    old_rows, old_version = rows(before), before.info()["version"]
    before.close()
    write_corpus(corpus_file, corpus(40, seed=6))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(local)
    try:
        seen: dict = {}
        killer = threading.Thread(target=kill_a_busy_worker, args=(client, client.run(os.getpid), seen))
        killer.start()
        result = CliRunner().invoke(cli, ["index", str(corpus_file), "--out", str(out), "--overwrite",
                                          "--dask", local.scheduler_address, *model])
        killer.join(timeout=60)
    finally:
        client.close()
        local.close()
    assert "victim" in seen
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Error: the Dask cluster gave up on a partition" in result.output and "nothing was written" in result.output
    after = DocumentIndex.load(out)
    assert after.info()["version"] == old_version and rows(after) == old_rows
