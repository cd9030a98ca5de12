"""The BM25 side: kept in step with add / upsert / delete, saved atomically, loaded, rebuilt when missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexFormatError, InvalidInputError, SparseConfig, SparseIndex
from deepseek_rag.documents import Chunk
from deepseek_rag.sparse.bm25 import SPARSE_NAME

DOCS = [
    Document("lease", "The tenant pays rent monthly. The landlord repairs the roof.", {"title": "Lease", "kind": "lease"}),
    Document("nda", "Confidential information stays secret for two years.", {"title": "NDA", "kind": "nda"}),
    Document("zh", "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。", {"kind": "nda"}),
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(model=str(tiny_model_dir))


@pytest.fixture
def index(encoder):
    return DocumentIndex.build(DOCS, encoder)


def sparse_docs(index, query, k=10, filters=None):
    scores, ids = index.search_sparse([query], k, filters=filters)
    chunks = index.store.get_chunks(ids[ids >= 0].tolist())
    return [chunks[int(i)].doc_id for i in ids[0] if i >= 0]


def chunk(chunk_id, text, language=None):
    return Chunk("d", 0, 0, len(text), text, id=chunk_id, metadata={"language": language} if language else {})


def test_sparse_index_unit():
    sparse = SparseIndex()
    sparse.add([1, 2], [sparse.analyze("rent is due", "en"), sparse.analyze("roof repairs", "en")])
    with pytest.raises(InvalidInputError, match="rebuild"):
        sparse.search(["rent"], 2)
    sparse.rebuild([[chunk(1, "rent is due"), chunk(2, "roof repairs")]], lambda c: c.text)
    scores, ids = sparse.search(["repairing the roof", "???", "nothing matches"], 3)
    assert ids[0].tolist() == [2, -1, -1] and scores[0, 0] > 0
    assert (ids[1:] == -1).all() and np.isneginf(scores[1:]).all()
    assert sparse.search(["rent roof"], 2, allowed_ids=np.array([2, 99]))[1].tolist() == [[2, -1]]
    sparse.remove([2])
    sparse.rebuild([[chunk(1, "rent is due")]], lambda c: c.text)
    assert len(sparse) == 1 and sparse.search(["roof"], 1)[1].tolist() == [[-1]]


def test_language_is_detected_and_recorded_unless_given(index, encoder):
    assert index.get_document("zh").metadata["language"] == "zh"
    assert index.get_document("lease").metadata["language"] == "en"
    assert "language" not in DOCS[0].metadata  # the caller's document is not changed
    given = DocumentIndex.build([Document("x", "Hello there, general tenant.", {"language": "fr"})], encoder)
    assert given.get_document("x").metadata["language"] == "fr"
    off = DocumentIndex.build([Document("y", "Hello there.")], encoder, detect_language=False)
    assert "language" not in off.get_document("y").metadata


def test_kept_in_step_with_add_upsert_delete(index):
    assert sparse_docs(index, "landlord roof") == ["lease"]
    index.add_documents([Document("fees", "Late fees apply to rent paid after the fifth.")])
    assert set(sparse_docs(index, "rent")) == {"lease", "fees"}
    index.upsert_documents([Document("fees", "Parking spaces are assigned by lottery.")])
    assert sparse_docs(index, "rent") == ["lease"] and sparse_docs(index, "parking lottery") == ["fees"]
    index.delete_documents(["lease"])
    assert sparse_docs(index, "rent") == []
    assert len(index.sparse) == index.store.counts()[1]


def test_filters_apply_to_the_sparse_side(index):
    assert set(sparse_docs(index, "secret 高血压", filters={"kind": "nda"})) == {"nda", "zh"}
    assert sparse_docs(index, "secret 高血压", filters={"language": "zh"}) == ["zh"]
    assert sparse_docs(index, "roof", filters={"kind": "nda"}) == []


def test_saved_with_the_index_and_loaded(index, encoder, tmp_path):
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / SPARSE_NAME).is_file()
    loaded = DocumentIndex.load(tmp_path / "idx", encoder)
    assert not loaded.sparse.stale  # read from the file, not rebuilt
    assert sparse_docs(loaded, "高血壓") == ["zh"]  # traditional query, simplified document
    writable = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
    writable.add_documents([Document("audit", "Audit rights last for two years.")])
    writable.save()
    assert set(sparse_docs(DocumentIndex.load(tmp_path / "idx", encoder), "two years")) == {"nda", "audit"}


def test_an_index_saved_without_a_sparse_file_still_loads(index, encoder, tmp_path):
    """Indexes written before the sparse side existed: no file, no checksum. Built lazily, saved next time."""
    import sqlite3

    index.save(tmp_path / "idx")
    (tmp_path / "idx" / SPARSE_NAME).unlink()
    db = sqlite3.connect(tmp_path / "idx" / "chunks.sqlite")
    db.execute("DELETE FROM meta WHERE key = 'sparse_checksum'")
    db.commit()
    db.close()
    manifest_path = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in ("sparse", "detect_language"):  # settings written before these existed
        del manifest["settings"][key]
    manifest_path.write_text(json.dumps(manifest))
    loaded = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
    assert loaded.sparse.stale
    assert sparse_docs(loaded, "landlord") == ["lease"]
    loaded.save()
    assert (tmp_path / "idx" / SPARSE_NAME).is_file()
    assert not DocumentIndex.load(tmp_path / "idx", encoder).sparse.stale


def test_damaged_sparse_file_is_rebuilt_from_the_store(index, encoder, tmp_path):
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / SPARSE_NAME).write_bytes(b"garbage")
    loaded = DocumentIndex.load(tmp_path / "idx", encoder)
    assert loaded.sparse.stale and sparse_docs(loaded, "confidential") == ["nda"]


def test_crash_between_commit_and_rename_rolls_the_sparse_file_forward(index, encoder, tmp_path, save_crashing_at_rename):
    index.save(tmp_path / "idx")
    writable = DocumentIndex.load(tmp_path / "idx", encoder, writable=True)
    writable.add_documents([Document("late", "A clause about liquidated damages.")])
    save_crashing_at_rename(writable, SPARSE_NAME + ".new")
    assert (tmp_path / "idx" / (SPARSE_NAME + ".new")).exists()
    reread = DocumentIndex.load(tmp_path / "idx", encoder)
    assert not reread.sparse.stale and not (tmp_path / "idx" / (SPARSE_NAME + ".new")).exists()
    assert sparse_docs(reread, "liquidated damages") == ["late"]


def test_unknown_sparse_format_is_refused(index, encoder, tmp_path):
    index.save(tmp_path / "idx")
    path = tmp_path / "idx" / SPARSE_NAME
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "format_version": 99}).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(IndexFormatError, match="sparse format 99"):
        SparseIndex.load(path, SparseConfig())


def test_other_analysis_settings_come_back_stale(index, tmp_path):
    index.save(tmp_path / "idx")
    assert SparseIndex.load(tmp_path / "idx" / SPARSE_NAME, SparseConfig(chinese="search")).stale
    assert not SparseIndex.load(tmp_path / "idx" / SPARSE_NAME, SparseConfig()).stale


def test_sparse_side_can_be_turned_off(encoder, tmp_path):
    index = DocumentIndex.build(DOCS, encoder, sparse={"enabled": False})
    assert not index.has_sparse
    index.save(tmp_path / "idx")
    assert not (tmp_path / "idx" / SPARSE_NAME).exists()
    with pytest.raises(InvalidInputError, match="no sparse"):
        index.search_sparse(["rent"], 3)
    with pytest.raises(InvalidInputError, match="k1"):
        SparseConfig(k1=-1)
    with pytest.raises(InvalidInputError, match="method"):
        SparseConfig(method="bm25+")
