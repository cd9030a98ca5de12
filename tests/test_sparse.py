"""The BM25 side: kept in step with add / upsert / delete, saved atomically, loaded, rebuilt when missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexFormatError, InvalidInputError, SparseConfig, SparseIndex

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


def test_sparse_index_unit():
    sparse = SparseIndex.from_texts([1, 2], ["rent is due", "roof repairs"])
    scores, ids = sparse.search(["repairing the roof", "???", "nothing matches"], 3)
    assert ids[0].tolist() == [2, -1, -1] and scores[0, 0] > 0
    assert (ids[1:] == -1).all() and np.isneginf(scores[1:]).all()
    assert sparse.search(["rent roof"], 2, allowed_ids=np.array([2, 99]))[1].tolist() == [[2, -1]]
    assert len(sparse) == 2 and len(SparseIndex([])) == 0


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
    postings = next((tmp_path / "idx" / "segments").glob("*/postings"))
    assert {p.name for p in postings.iterdir()} >= {"meta.json", "ptr.npy", "rows.npy", "tf.npy"}
    loaded = DocumentIndex.load(tmp_path / "idx", encoder)
    rows = loaded.store.states[0].segment.postings.rows
    assert isinstance(rows.base, np.memmap) or isinstance(getattr(rows.base, "base", None), np.memmap)  # mapped, not re-analysed
    assert sparse_docs(loaded, "高血壓") == ["zh"]  # traditional query, simplified document
    loaded.add_documents([Document("audit", "Audit rights last for two years.")])
    loaded.save()
    assert set(sparse_docs(DocumentIndex.load(tmp_path / "idx", encoder), "two years")) == {"nda", "audit"}


def test_scores_are_bm25s_scores():
    """Same formulas as bm25s (its lucene and atire variants), checked against bm25s itself."""
    import bm25s

    texts = [d.text for d in DOCS] + ["the roof and the roof again", "rent rent rent", "nothing in common"]
    for method in ("lucene", "atire"):
        config = SparseConfig(method=method)
        ours = SparseIndex.from_texts(list(range(1, len(texts) + 1)), texts, config)
        analyzer = config.analyzer("en")
        vocab: dict[str, int] = {}
        corpus = [[vocab.setdefault(t, len(vocab)) for t in analyzer(text)] for text in texts]
        reference = bm25s.BM25(method=method)
        reference.index((corpus, vocab), show_progress=False, create_empty_token=False)
        for query in ("roof repairs", "rent roof rent", "高血压"):
            expected = reference.get_scores_from_ids([vocab[t] for t in ours.analyze_query(query) if t in vocab])
            scores, ids = ours.search([query], len(texts))
            got = np.zeros(len(texts))
            got[ids[0][ids[0] > 0] - 1] = scores[0][ids[0] > 0]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_segments_with_deletions_score_as_one_fresh_index():
    """Statistics come from the live chunks of every segment: no drift after upserts and deletes."""
    from deepseek_rag.sparse.bm25 import Postings, PostingsPart

    config = SparseConfig()
    analyzer = config.analyzer("en")
    texts = [f"clause {i} on rent and the roof, notice {i % 3}" for i in range(40)]
    terms = [analyzer(t) for t in texts]
    first = Postings.from_terms(range(1, 21), terms[:20], ["english"])
    second = Postings.from_terms(range(21, 41), terms[20:], ["english"])
    live = np.ones(20, dtype=bool)
    live[[2, 7]] = False
    segmented = SparseIndex([PostingsPart(first, live), PostingsPart(second)], config)
    kept = [i for i in range(40) if i not in (2, 7)]
    fresh = SparseIndex.from_texts([i + 1 for i in kept], [texts[i] for i in kept], config)
    merged = SparseIndex([PostingsPart(Postings.merge([(first, live), (second, None)]))], config)
    for query in ("rent notice 2", "roof clause 7"):
        expected = fresh.search([query], 40)
        for candidate in (segmented, merged):
            got = candidate.search([query], 40)
            assert got[1].tolist() == expected[1].tolist()
            np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)


def test_postings_of_another_format_or_analysis_are_refused(index, encoder, tmp_path):
    from deepseek_rag.sparse.bm25 import Postings

    index.save(tmp_path / "idx")
    folder = next((tmp_path / "idx" / "segments").glob("*/postings"))
    with pytest.raises(IndexFormatError, match="other settings"):
        Postings.open(folder, SparseConfig(chinese="search"))
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(IndexFormatError, match="postings format 99"):
        Postings.open(folder, SparseConfig())
    with pytest.raises(IndexFormatError, match="damaged or truncated"):  # the version records every file's size
        DocumentIndex.load(tmp_path / "idx", encoder)


def test_sparse_side_can_be_turned_off(encoder, tmp_path):
    index = DocumentIndex.build(DOCS, encoder, sparse={"enabled": False})
    assert not index.has_sparse
    index.save(tmp_path / "idx")
    assert not list((tmp_path / "idx").rglob("postings"))
    with pytest.raises(InvalidInputError, match="no sparse"):
        index.search_sparse(["rent"], 3)
    with pytest.raises(InvalidInputError, match="k1"):
        SparseConfig(k1=-1)
    with pytest.raises(InvalidInputError, match="method"):
        SparseConfig(method="bm25+")
