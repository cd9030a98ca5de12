"""ChunkStore: ids, transactions, filters, versions."""

from __future__ import annotations

import sqlite3

import pytest

from deepseek_rag import ChunkStore, Chunk, Document, IndexFormatError, InvalidInputError


def chunks_for(doc: Document, n: int) -> list[Chunk]:
    step = len(doc.text) // n
    return [Chunk(doc.id, i, i * step, (i + 1) * step, doc.text[i * step : (i + 1) * step]) for i in range(n)]


def test_ids_are_assigned_and_never_reused(tmp_path):
    store = ChunkStore(tmp_path / "s.sqlite")
    doc = Document("a", "x" * 100, {"lang": "en"})
    first = store.add_document(doc, chunks_for(doc, 4))
    assert first == sorted(first) and len(set(first)) == 4
    assert store.delete_document("a") == first
    again = store.add_document(doc, chunks_for(doc, 2))
    assert min(again) > max(first)


def test_uncommitted_changes_roll_back_on_close(tmp_path):
    path = tmp_path / "s.sqlite"
    store = ChunkStore(path)
    doc = Document("a", "hello world", {})
    store.add_document(doc, chunks_for(doc, 1))
    store.commit()
    store.add_document(Document("b", "more"), [])
    assert store.dirty
    store.close()
    reopened = ChunkStore(path, create=False)
    assert reopened.document_ids() == ["a"]


def test_filters_match_metadata_values_and_lists(tmp_path):
    store = ChunkStore(None)
    for i, (lang, year, flag) in enumerate([("en", 2020, True), ("zh", 2021, False), ("en", 2022, False)]):
        doc = Document(f"d{i}", "text " * 10, {"lang": lang, "year": year, "signed": flag})
        store.add_document(doc, chunks_for(doc, 2))
    def docs(filters):
        return {c.doc_id for c in store.get_chunks(store.chunk_ids_matching(filters).tolist()).values()}
    assert docs({"lang": "en"}) == {"d0", "d2"}
    assert docs({"year": [2021, 2022]}) == {"d1", "d2"}
    assert docs({"lang": "en", "signed": True}) == {"d0"}
    assert docs({"doc_id": "d1"}) == {"d1"}
    with pytest.raises(InvalidInputError, match="filter key"):
        store.chunk_ids_matching({"bad'key": 1})
    with pytest.raises(InvalidInputError, match="empty list"):
        store.chunk_ids_matching({"lang": []})


def test_document_span_and_neighbours(tmp_path):
    store = ChunkStore(None)
    doc = Document("a", "0123456789" * 4)
    store.add_document(doc, chunks_for(doc, 4))
    assert store.document_span("a", 5, 15) == doc.text[5:15]
    assert [c.ordinal for c in store.chunks_of("a", 1, 2)] == [1, 2]


def test_missing_damaged_or_newer_store_is_a_clear_error(tmp_path):
    with pytest.raises(IndexFormatError, match="missing"):
        ChunkStore(tmp_path / "none.sqlite", create=False)
    path = tmp_path / "s.sqlite"
    ChunkStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="store format 99"):
        ChunkStore(path, create=False)
