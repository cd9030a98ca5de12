"""ChunkStore: rows under the index's ids, filters, a written store read-only, damaged stores are clear errors."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from deepseek_rag import Chunk, ChunkStore, Document, IndexFormatError, InvalidInputError


def chunks_for(doc: Document, n: int) -> list[Chunk]:
    step = len(doc.text) // n
    return [Chunk(doc.id, i, i * step, (i + 1) * step, doc.text[i * step : (i + 1) * step]) for i in range(n)]


def filled_store() -> ChunkStore:
    store = ChunkStore()
    rows = []
    for i, (lang, year, flag) in enumerate([("en", 2020, True), ("zh", 2021, False), ("en", 2022, False)]):
        doc = Document(f"d{i}", "text " * 10, {"lang": lang, "year": year, "signed": flag, "tags": ["a", f"t{i}"]})
        rows.append((doc, chunks_for(doc, 2), [10 * i + 1, 10 * i + 2]))
    store.add_documents(rows)
    return store


def test_rows_keep_the_ids_they_are_given():
    store = filled_store()
    assert store.chunk_ids().tolist() == [1, 2, 11, 12, 21, 22]
    assert store.chunk_ids_of("d1") == [11, 12]
    assert set(store.get_chunks([2, 21, 999])) == {2, 21}
    assert store.counts() == (3, 6)


def test_a_failed_batch_leaves_nothing_behind():
    store = filled_store()
    doc = Document("new", "some text here")
    with pytest.raises(sqlite3.IntegrityError):  # id 1 is taken: the whole batch rolls back
        store.add_documents([(doc, chunks_for(doc, 1), [99]), (Document("x", "more"), chunks_for(Document("x", "more"), 1), [1])])
    assert not store.has_document("new") and store.counts() == (3, 6)


def test_filters_match_metadata_values_and_lists():
    store = filled_store()

    def docs(filters):
        return {c.doc_id for c in store.get_chunks(store.chunk_ids_matching(filters).tolist()).values()}

    assert docs({"lang": "en"}) == {"d0", "d2"}
    assert docs({"year": [2021, 2022]}) == {"d1", "d2"}
    assert docs({"lang": "en", "signed": True}) == {"d0"}
    assert docs({"doc_id": "d1"}) == {"d1"}
    assert docs({"year": {"$gte": 2021}}) == {"d1", "d2"}
    assert docs({"$or": [{"lang": "zh"}, {"year": {"$lt": 2021}}]}) == {"d0", "d1"}
    assert docs({"$not": {"lang": "en"}}) == {"d1"}
    assert docs({"tags": {"$contains": "t2"}}) == {"d2"}
    assert docs({"missing": {"$exists": False}}) == {"d0", "d1", "d2"}
    assert docs({"missing": "x"}) == set()
    with pytest.raises(InvalidInputError, match="filter key"):
        store.chunk_ids_matching({"bad'key": 1})
    with pytest.raises(InvalidInputError, match="empty list"):
        store.chunk_ids_matching({"lang": []})


def test_document_span_and_neighbours():
    store = ChunkStore()
    doc = Document("a", "0123456789" * 4)
    store.add_document(doc, chunks_for(doc, 4), [1, 2, 3, 4])
    assert store.document_span("a", 5, 15) == doc.text[5:15]
    assert [c.ordinal for c in store.chunks_of("a", 1, 2)] == [1, 2]


def test_a_written_store_opens_read_only_and_reads_from_many_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    filled_store().write_to(tmp_path / "s.sqlite")
    store = ChunkStore.open(tmp_path / "s.sqlite")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: sorted(store.get_chunks([1, 12, 22])), range(64)))
    assert all(r == [1, 12, 22] for r in results)
    with pytest.raises(InvalidInputError, match="read-only"):
        store.add_document(Document("z", "zzz"), [], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]  # no -wal, no -shm: nothing written


def test_copy_from_leaves_out_excluded_documents(tmp_path):
    copy = ChunkStore.create(tmp_path / "copy.sqlite")
    copy.copy_from(filled_store(), np.array([11, 12]))
    copy.finish()
    reopened = ChunkStore.open(tmp_path / "copy.sqlite")
    assert [d for d, _ in reopened.document_ids()] == ["d0", "d2"] and reopened.counts() == (2, 4)


def test_missing_damaged_or_newer_store_is_a_clear_error(tmp_path):
    with pytest.raises(IndexFormatError, match="missing"):
        ChunkStore.open(tmp_path / "none.sqlite")
    path = tmp_path / "s.sqlite"
    filled_store().write_to(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="store format 99"):
        ChunkStore.open(path)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE chunks")
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="table chunks missing"):
        ChunkStore.open(path)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexFormatError, match="not a readable chunk store"):
        ChunkStore.open(tmp_path / "junk.sqlite")
