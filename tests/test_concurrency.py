"""Many readers and one writer at a time: real threads and real processes, every answer from a published version."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexHandle, IndexLockedError
from deepseek_rag.ingest.chunking import ChunkingConfig
from deepseek_rag.testing import build_tiny_adapter

CLAUSES = ["Either party may terminate this agreement on ninety days notice.",
           "The tenant repairs the roof and keeps the premises in good order.",
           "This agreement is governed by the laws of the State of New York.",
           "Payment is due within thirty days of the invoice date."]


def docs(prefix: str, n: int, version: int = 0) -> list[Document]:
    return [Document(f"{prefix}-{i}", f"{CLAUSES[i % 4]} Version {version} of clause {i}. " * 3, {"n": i})
            for i in range(n)]


@pytest.fixture(scope="module")
def adapted_encoder(tiny_model_dir, tmp_path_factory):
    adapter = build_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))
    return DualEncoder(model=str(tiny_model_dir), adapter=str(adapter), dtype="float32")


def test_encoding_from_many_threads_matches_one_thread(adapted_encoder):
    """Per-side adapters and one tokenizer per thread: no side flips, no 'Already borrowed'."""
    queries = [f"who may terminate clause {i}?" for i in range(16)]
    passages = [c * (1 + i % 5) for i, c in enumerate(CLAUSES * 8)]
    want_q = adapted_encoder.encode_queries(queries)
    want_d = adapted_encoder.encode_documents(passages)

    def query_side(_):
        return np.abs(adapted_encoder.encode_queries(queries) - want_q).max()

    def document_side(_):
        return np.abs(adapted_encoder.encode_documents(passages) - want_d).max()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(query_side if i % 2 else document_side, i) for i in range(32)]
        worst = max(f.result() for f in futures)
    assert worst < 1e-5


def test_eight_query_threads_while_a_writer_upserts_and_saves(adapted_encoder, tmp_path):
    index = DocumentIndex.build(docs("d", 12), adapted_encoder, chunking=ChunkingConfig(max_tokens=24, overlap=4))
    index.save(tmp_path / "idx")
    handle = IndexHandle(tmp_path / "idx", adapted_encoder, watch=0.05)
    texts = {d.id: {d.text} for d in docs("d", 12)}
    stop = threading.Event()
    errors: list[BaseException] = []
    answered = [0]

    def writer():
        try:
            writable = DocumentIndex.load(tmp_path / "idx", adapted_encoder)
            for version in range(1, 6):
                batch = docs("d", 12, version)[:4]
                for d in batch:
                    texts[d.id].add(d.text)
                writable.upsert_documents(batch)
                writable.save()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader(i):
        retriever = handle.as_retriever(top_k=5)
        while not stop.is_set() or answered[0] < 40:
            try:
                for hit in retriever.retrieve(f"{CLAUSES[i % 4]} clause {i}"):
                    assert any(hit.text in t for t in texts[hit.doc_id]), (hit.doc_id, hit.text)
                answered[0] += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    handle.close()
    assert not errors, errors[:3]
    assert answered[0] >= 40
    final = DocumentIndex.load(tmp_path / "idx", adapted_encoder)
    assert final.version >= 6 and len(final.vectors) == final.store.counts()[1]
    assert final.get_document("d-0").text == docs("d", 12, 5)[0].text


READER = textwrap.dedent("""
    import json, sys
    from deepseek_rag import DocumentIndex
    path, rounds = sys.argv[1], int(sys.argv[2])
    encoder = None
    for _ in range(rounds):
        index = DocumentIndex.load(path, encoder, writable=False)
        encoder = index.encoder
        ids = index.document_ids()
        hits = index.as_retriever(top_k=3).retrieve("clause notice payment")
        print(json.dumps({"version": index.version, "ids": ids, "chunks": index.store.counts()[1],
                          "vectors": len(index.vectors), "hits": [h.doc_id for h in hits]}), flush=True)
""")

WRITER = textwrap.dedent("""
    import sys
    from deepseek_rag import Document, DocumentIndex
    index = DocumentIndex.load(sys.argv[1])
    for i in range(int(sys.argv[2])):
        index.add_documents([Document(f"loop-{i}", "Clause %d on notices and payments. " % i * 6)])
        index.save()
        print(index.snapshot().version, flush=True)
""")


def test_a_reader_process_sees_only_published_versions_while_a_writer_process_saves(tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    DocumentIndex.build(docs("base", 3), encoder).save(tmp_path / "idx")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "idx"), "12"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reader = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "idx"), "40"], capture_output=True, text=True,
                            timeout=300)
    written = writer.communicate(timeout=300)
    assert writer.returncode == 0, written[1][-2000:]
    assert reader.returncode == 0, reader.stderr[-2000:]
    base = {"base-0", "base-1", "base-2"}
    seen = [json.loads(line) for line in reader.stdout.splitlines()]
    assert len(seen) == 40
    added_by_version: dict[int, int] = {}
    for answer in seen:
        added = len(answer["ids"]) - len(base)  # each save adds one loop document (merges add versions, no documents)
        assert set(answer["ids"]) == base | {f"loop-{i}" for i in range(added)}, answer
        assert added_by_version.setdefault(answer["version"], added) == added  # one version, one content
        assert answer["chunks"] == answer["vectors"]
        assert set(answer["hits"]) <= set(answer["ids"])
    versions = sorted(added_by_version)
    assert [added_by_version[v] for v in versions] == sorted(added_by_version.values())  # newer never holds less
    assert len({a["version"] for a in seen}) > 1, "the reader never saw the writer publish"


def test_a_second_writer_is_refused_with_the_holders_name(tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    DocumentIndex.build(docs("d", 3), encoder).save(tmp_path / "idx")
    first = DocumentIndex.load(tmp_path / "idx", encoder)
    first.delete_documents(["d-0"])  # unsaved: holds the writer lock
    second = DocumentIndex.load(tmp_path / "idx", encoder)
    with pytest.raises(IndexLockedError, match="another DocumentIndex in this process"):
        second.delete_documents(["d-1"])
    (tmp_path / "more.txt").write_text("A new clause on audit rights.")
    cli = subprocess.run([sys.executable, "-m", "deepseek_rag.cli", "add", str(tmp_path / "idx"), str(tmp_path / "more.txt")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert f"being written by process {__import__('os').getpid()}" in cli.stderr
    first.save()  # publishes and lets go: the second writer may now write
    second.delete_documents(["d-1"])
    second.save()
    assert DocumentIndex.load(tmp_path / "idx", encoder).document_ids() == ["d-2"]


KILLED_WRITER = textwrap.dedent("""
    import sys
    from deepseek_rag import Document, DocumentIndex
    index = DocumentIndex.load(sys.argv[1])
    i = 0
    while True:
        index.upsert_documents([Document(f"loop-{i % 5}", "Clause %d on notices and payments. " % i * 30)])
        index.delete_documents([f"loop-{(i + 2) % 5}"], missing_ok=True)
        index.save()
        print(i, flush=True)
        i += 1
""")


def test_sigkill_at_any_moment_of_a_save_leaves_the_last_published_version(tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    DocumentIndex.build(docs("d", 4), encoder).save(tmp_path / "idx")
    last_version = 1
    for delay in (0.05, 0.3, 0.7, 1.1, 1.6):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "idx")], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # model loaded and at least one save published
        time.sleep(delay)
        proc.kill()
        proc.wait()
        reread = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
        assert reread.version > last_version
        last_version = reread.version
        assert len(reread.vectors) == reread.store.counts()[1] == sum(len(reread.store.chunks_of(d)) for d in reread.document_ids())
        assert {"d-0", "d-1", "d-2", "d-3"} <= set(reread.document_ids())
        reread.add_documents([Document(f"after-{delay}", "A clause written after the crash.")])  # the lock died with it
        reread.save()
        last_version = reread.version


def test_a_failed_upsert_leaves_memory_and_disk_as_they_were(tiny_model_dir, tmp_path, monkeypatch):
    from deepseek_rag.vectors.faiss_store import FaissVectorStore

    encoder = DualEncoder(model=str(tiny_model_dir))
    DocumentIndex.build(docs("d", 4), encoder).save(tmp_path / "idx")
    index = DocumentIndex.load(tmp_path / "idx", encoder)
    before = ([h.chunk_id for h in index.as_retriever(top_k=10).retrieve("terminate notice")], index.document_ids(),
              index.store.counts())
    listing = sorted(p.relative_to(tmp_path) for p in (tmp_path / "idx").rglob("*"))

    def fail(self, ids, vectors):
        raise RuntimeError("injected: the vector add fails after the chunk rows were written")

    monkeypatch.setattr(FaissVectorStore, "add", fail)
    with pytest.raises(RuntimeError, match="injected"):
        index.upsert_documents([Document("d-0", "A replacement text."), Document("new", "Another text.")])
    monkeypatch.undo()
    after = ([h.chunk_id for h in index.as_retriever(top_k=10).retrieve("terminate notice")], index.document_ids(),
             index.store.counts())
    assert after == before and index.get_document("d-0").text == docs("d", 4)[0].text
    index.save()  # nothing changed: nothing is published
    assert index.version == 1
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "idx").rglob("*")) == listing
    index.upsert_documents([Document("d-0", "A replacement text.")])  # and the lock was let go: writing works
    index.save()
    assert DocumentIndex.load(tmp_path / "idx", encoder).get_document("d-0").text == "A replacement text."


def test_handle_swaps_versions_and_closes_the_old_one_after_its_searches(tiny_model_dir, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    DocumentIndex.build(docs("d", 4), encoder).save(tmp_path / "idx")
    handle = IndexHandle(tmp_path / "idx", encoder)
    with handle.reading() as old:  # a search in flight on version 1
        writer = DocumentIndex.load(tmp_path / "idx", encoder)
        writer.delete_documents(["d-0"])
        writer.add_documents([Document("late", "A late clause.")])
        writer.save()
        assert handle.refresh() and handle.version == 2
        assert "d-0" in old.document_ids() and old.get_document("d-0") is not None  # still whole
        assert [s.segment.store._closed for s in old.states] == [False]
    assert old.states[0].segment.store._closed is False  # shared with version 2: kept open
    assert set(handle.snapshot().document_ids()) == {"d-1", "d-2", "d-3", "late"}
    assert handle.refresh() is False
    handle.close()
