"""DocumentIndex: build, change, save and load; atomic saves; bad input gets clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepseek_rag import (
    Document,
    DocumentIndex,
    DocumentNotFoundError,
    DualEncoder,
    EncoderMismatchError,
    IndexFormatError,
    IndexSettings,
    IndexSpecError,
    InvalidInputError,
)
from deepseek_rag.ingest.chunking import ChunkingConfig

CONTRACT = (
    "# Term\nThis Agreement starts on the Effective Date. It runs for three years. "
    "Either party may renew it by written notice.\n\n"
    "# Termination\nEither party may terminate this Agreement on ninety days written notice. "
    "A party in material breach may be terminated at once.\n\n"
    "# Governing Law\nThis Agreement is governed by the laws of the State of New York. " * 3
)


def make_docs(n: int = 6) -> list[Document]:
    return [
        Document(f"doc-{i}", CONTRACT + f" Schedule {i} lists the fees. " * (i + 1),
                 {"title": f"Contract {i}", "party": "acme" if i % 2 else "globex", "year": 2020 + i})
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(model=str(tiny_model_dir))


@pytest.fixture
def index(encoder):
    return DocumentIndex.build(make_docs(), encoder, chunking=ChunkingConfig(max_tokens=48, overlap=8))


def test_chunks_fit_the_model_and_point_into_the_source(index, encoder):
    docs = {d.id: d for d in make_docs()}
    chunks = [c for batch in index.store.iter_chunks() for c in batch]
    assert len(chunks) > len(docs)  # long documents are split, not truncated
    for chunk in chunks:
        assert docs[chunk.doc_id].text[chunk.start : chunk.end] == chunk.text
        embedded = index.embedding_text(chunk, docs[chunk.doc_id].title)
        assert len(encoder.tokenizer(embedded)["input_ids"]) <= encoder.max_seq_length
    assert {c.section for c in chunks} >= {"Term", "Termination"}


def test_windows_fit_the_encoders_length_not_the_tokenizers(tiny_model_dir):
    short = DualEncoder(model=str(tiny_model_dir), max_seq_length=24)  # tokenizer allows 64
    index = DocumentIndex.build(make_docs(2), short)
    docs = {d.id: d for d in make_docs(2)}
    for chunk in (c for batch in index.store.iter_chunks() for c in batch):
        embedded = index.embedding_text(chunk, docs[chunk.doc_id].title)
        assert len(short.tokenizer(embedded)["input_ids"]) <= 24


def test_retrieves_the_chunk_whose_text_is_the_query(index):
    target = index.store.chunks_of("doc-3")[-1]  # the unique "Schedule 3" tail
    # dense mode: the scores checked below are cosines (hybrid scores are fusion scores)
    hits = index.as_retriever(top_k=3, mode="dense").retrieve(index.embedding_text(target, "Contract 3"))
    assert hits[0].score >= hits[-1].score
    # the tiny test vocabulary maps digits to [UNK], so twin chunks of other contracts may tie with it
    assert target.id in {h.chunk_id for h in hits if h.score == pytest.approx(1.0, abs=1e-4)}


def test_add_upsert_delete_without_rebuild(index):
    retriever = index.as_retriever(top_k=50)
    index.add_documents([Document("new", "Payment is due within thirty days of the invoice date.", {"title": "Fees"})])
    assert "new" in {h.doc_id for h in retriever.retrieve("payment due invoice", filters={"doc_id": "new"})}
    index.upsert_documents([Document("new", "Replaced text about confidentiality obligations.")])
    assert index.get_document("new").text.startswith("Replaced")
    assert [h.text for h in retriever.retrieve("confidentiality", filters={"doc_id": "new"})] == [
        "Replaced text about confidentiality obligations."
    ]
    removed = index.delete_documents(["new", "doc-0"])
    assert removed > 1
    assert not {"new", "doc-0"} & {h.doc_id for h in retriever.retrieve("agreement", top_k=200)}
    assert len(index.vectors) == index.store.counts()[1]


def test_save_load_round_trip_gives_identical_results(index, encoder, tmp_path):
    before = index.as_retriever(top_k=5).retrieve("who may terminate the agreement")
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx", encoder)
    after = loaded.as_retriever(top_k=5).retrieve("who may terminate the agreement")
    assert [(h.chunk_id, h.text) for h in after] == [(h.chunk_id, h.text) for h in before]
    np.testing.assert_allclose([h.score for h in after], [h.score for h in before], rtol=1e-5)
    assert loaded.info()["documents"] == 6 and (tmp_path / "idx" / "manifest.json").is_file()


def test_load_reopens_the_recorded_encoder_by_itself(index, tmp_path):
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx")
    assert loaded.encoder.fingerprint() == index.encoder.fingerprint()


def test_changes_in_place_are_saved_and_reloaded(index, encoder, tmp_path):
    index.save(tmp_path / "idx")
    writable = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
    writable.delete_documents(["doc-1"])
    writable.add_documents([Document("extra", "An extra clause on audit rights.")])
    writable.save()
    reread = DocumentIndex.load(tmp_path / "idx", encoder)
    assert set(reread.document_ids()) == {"doc-0", "doc-2", "doc-3", "doc-4", "doc-5", "extra"}
    assert len(reread.vectors) == reread.store.counts()[1]


def test_unsaved_changes_are_not_visible_on_disk(index, encoder, tmp_path):
    index.save(tmp_path / "idx")
    writable = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
    writable.delete_documents(["doc-2"])
    writable.close()  # never saved: the directory keeps its old state
    assert "doc-2" in DocumentIndex.load(tmp_path / "idx", encoder).document_ids()


def test_a_crash_before_the_pointer_moves_keeps_the_old_version(index, encoder, tmp_path, monkeypatch):
    import deepseek_rag.storage.versions as versions

    index.save(tmp_path / "idx")
    writable = DocumentIndex.load(tmp_path / "idx", encoder)
    writable.delete_documents(["doc-5"])
    writable.add_documents([Document("late", "A late clause on audits.")])
    real = versions.write_current
    monkeypatch.setattr(versions, "write_current", lambda *a: (_ for _ in ()).throw(OSError("simulated crash")))
    with pytest.raises(OSError):
        writable.save()
    reread = DocumentIndex.load(tmp_path / "idx", encoder)
    assert reread.version == 1 and "doc-5" in reread.document_ids() and "late" not in reread.document_ids()
    assert len(reread.vectors) == reread.store.counts()[1]
    monkeypatch.setattr(versions, "write_current", real)
    writable.save()  # the writer still holds its changes; the next save publishes them over the debris
    reread = DocumentIndex.load(tmp_path / "idx", encoder)
    assert reread.version == 2 and "doc-5" not in reread.document_ids() and "late" in reread.document_ids()


def test_killed_writer_leaves_a_loadable_index(index, tiny_model_dir, tmp_path):
    """A process killed at random moments while saving: the directory always loads, consistent."""
    index.save(tmp_path / "idx")
    script = textwrap.dedent(f"""
        from deepseek_rag import DocumentIndex, Document
        index = DocumentIndex.load({str(tmp_path / 'idx')!r}, writable=True)
        i = 0
        while True:
            index.add_documents([Document(f"loop-{{i}}", "Clause %d on notices and payments. " % i * 20)])
            index.save()
            print(i, flush=True)
            i += 1
    """)
    for delay in (0.4, 1.1, 2.3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # model loaded and at least one save done
        import time

        time.sleep(delay)
        proc.kill()
        proc.wait()
        reread = DocumentIndex.load(tmp_path / "idx")
        assert len(reread.vectors) == reread.store.counts()[1]
        reread.close()


def test_bad_input_is_a_clear_error(index, encoder, tmp_path):
    with pytest.raises(InvalidInputError, match="no text"):
        index.add_documents([Document("blank", "   \n ")])
    with pytest.raises(InvalidInputError, match="already in the index"):
        index.add_documents([Document("doc-1", "again")])
    with pytest.raises(InvalidInputError, match="appears twice"):
        index.add_documents([Document("x", "one"), Document("x", "two")])
    with pytest.raises(DocumentNotFoundError, match="no document with id 'nope'"):
        index.delete_documents(["nope"])
    assert index.delete_documents(["nope"], missing_ok=True) == 0
    with pytest.raises(IndexSpecError, match="IVF1024"):
        DocumentIndex.build(make_docs(2), encoder, index_spec="IVF1024,Flat")
    index.save(tmp_path / "a")
    other = DocumentIndex.build(make_docs(1), encoder)
    with pytest.raises(InvalidInputError, match="not empty"):
        other.save(tmp_path / "a")
    other.save(tmp_path / "a", overwrite=True)
    assert DocumentIndex.load(tmp_path / "a", encoder).document_ids() == ["doc-0"]


def test_damaged_or_missing_directories_are_clear_errors(index, encoder, tmp_path):
    import json

    with pytest.raises(IndexFormatError, match="does not exist"):
        DocumentIndex.load(tmp_path / "missing", encoder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an index directory"):
        DocumentIndex.load(tmp_path / "empty", encoder)
    index.save(tmp_path / "idx")
    segment = next((tmp_path / "idx" / "segments").iterdir())
    vectors = segment / "vectors.faiss"
    data = vectors.read_bytes()
    vectors.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="vectors.faiss"):
        DocumentIndex.load(tmp_path / "idx", encoder)
    vectors.write_bytes(data)
    DocumentIndex.load(tmp_path / "idx", encoder).close()
    store = segment / "chunks.sqlite"
    size = store.stat().st_size
    store.write_bytes((b"this is not a database" * size)[:size])
    with pytest.raises(IndexFormatError, match="chunk store"):
        DocumentIndex.load(tmp_path / "idx", encoder)
    record = tmp_path / "idx" / "versions" / "v000001.json"
    good = json.loads(record.read_text())
    for damaged, reason in [([], "expected a JSON object"), ({k: v for k, v in good.items() if k != "encoder"}, "'encoder' is missing"),
                            ({**good, "settings": None}, "'settings' should be a dict"), ("{", "damaged")]:
        record.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
        with pytest.raises(IndexFormatError, match=reason):
            DocumentIndex.load(tmp_path / "idx", encoder)
    (tmp_path / "idx" / "CURRENT").write_text('{"format_version": 3, "version": 1}')
    with pytest.raises(IndexFormatError, match="format 3"):
        DocumentIndex.load(tmp_path / "idx", encoder)


def test_index_from_a_newer_library_is_a_clear_error(index, encoder, tmp_path):
    import json

    index.save(tmp_path / "idx")
    record_path = tmp_path / "idx" / "versions" / "v000001.json"
    record = json.loads(record_path.read_text())
    record["settings"]["reranker"] = {"model": "x"}
    record_path.write_text(json.dumps(record))
    with pytest.raises(IndexFormatError, match="newer deepseek-rag"):
        DocumentIndex.load(tmp_path / "idx", encoder)


def test_opening_with_another_encoder_is_refused(index, tmp_path):
    from deepseek_rag.testing import build_tiny_model

    index.save(tmp_path / "idx")
    other = DualEncoder(model=str(build_tiny_model(tmp_path / "other", seed=7)))
    with pytest.raises(EncoderMismatchError, match="cannot be searched"):
        DocumentIndex.load(tmp_path / "idx", other)


def test_ivf_spec_builds_and_deletes(encoder):
    docs = [Document(f"d{i}", f"Clause {i}. " + "Notice terms and payment terms apply. " * 30) for i in range(40)]
    index = DocumentIndex.build(docs, encoder, index_spec="IVF4,Flat", chunking=ChunkingConfig(max_tokens=24, overlap=4))
    assert index.vectors.spec.startswith("IVF4")
    index.delete_documents(["d1"])
    index.delete_documents(["d2"])  # a second removal: the IndexIDMap2-around-IVF trap would abort here
    assert len(index.vectors) == index.store.counts()[1]


def test_concurrent_queries_while_adding(index):
    from concurrent.futures import ThreadPoolExecutor

    retriever = index.as_retriever(top_k=3)
    errors = []

    def query(i):
        try:
            for hit in retriever.retrieve(f"terminate notice {i}"):
                assert hit.text
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(query, i) for i in range(40)]
        index.add_documents([Document(f"late-{i}", f"Late clause {i} about audits.") for i in range(10)])
        for future in futures:
            future.result()
    assert not errors
    assert len(index.vectors) == index.store.counts()[1]


def test_settings_are_validated_and_saved(encoder, tmp_path):
    with pytest.raises(InvalidInputError, match="index_spec"):
        IndexSettings(index_spec="")
    index = DocumentIndex.build(make_docs(2), encoder, contextual_headers=False)
    index.save(tmp_path / "idx")
    assert DocumentIndex.load(tmp_path / "idx", encoder).settings.contextual_headers is False
