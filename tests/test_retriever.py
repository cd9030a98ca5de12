"""Retriever: ranking, filters, document aggregation, neighbour expansion, input limits."""

from __future__ import annotations

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError
from deepseek_rag.ingest.chunking import ChunkingConfig
from deepseek_rag.retrieval.retriever import MAX_TOP_K, aggregate_document_scores


@pytest.fixture(scope="module")
def index(tiny_model_dir):
    encoder = DualEncoder(model=str(tiny_model_dir))
    docs = [
        Document("lease", "The tenant pays rent monthly. " * 10 + "The landlord repairs the roof. " * 10,
                 {"kind": "lease", "lang": "en"}),
        Document("nda", "Confidential information stays secret. " * 10 + "The term is two years. " * 10,
                 {"kind": "nda", "lang": "en"}),
        Document("zh", "本合同自双方签字之日起生效。" * 10 + "高血压患者应当减少盐的摄入。" * 10, {"kind": "nda", "lang": "zh"}),
    ]
    return DocumentIndex.build(docs, encoder, chunking=ChunkingConfig(max_tokens=24, overlap=4))


def test_hits_are_sorted_and_carry_their_place(index):
    hits = index.as_retriever(top_k=5).retrieve("The landlord repairs the roof.")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        doc = index.get_document(hit.doc_id)
        assert doc.text[hit.start : hit.end] == hit.text
        assert hit.metadata["kind"] in {"lease", "nda"}


def test_filters_restrict_results(index):
    retriever = index.as_retriever(top_k=50)
    assert {h.doc_id for h in retriever.retrieve("contract", filters={"lang": "zh"})} == {"zh"}
    assert {h.doc_id for h in retriever.retrieve("contract", filters={"kind": "nda"})} == {"nda", "zh"}
    assert {h.doc_id for h in retriever.retrieve("contract", filters={"kind": ["lease", "nda"], "lang": "en"})} == {"lease", "nda"}
    assert retriever.retrieve("contract", filters={"kind": "invoice"}) == []
    fixed = index.as_retriever(top_k=50, filters={"doc_id": "lease"})
    assert {h.doc_id for h in fixed.retrieve("contract")} == {"lease"}


def test_document_level_groups_chunks(index):
    retriever = index.as_retriever(top_k=3)
    for rule in ("max", "softmax", "topk_sum"):
        docs = retriever.retrieve_documents("rent and repairs", aggregation=rule)
        # one entry per document, at most top_k (fewer when the candidate chunks cover fewer documents)
        assert len({d.doc_id for d in docs}) == len(docs) and 2 <= len(docs) <= 3
        assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
        assert all(d.hits and all(h.doc_id == d.doc_id for h in d.hits) for d in docs)


def test_focus_documents_keeps_chunks_inside_the_best_documents(index):
    """Documents ranked first (hybrid: BM25 finds "landlord"), then the best chunks of the top one only."""
    wide = index.as_retriever(top_k=50).retrieve("landlord roof rent")
    focused = index.as_retriever(top_k=50, focus_documents=1)
    best = index.as_retriever(top_k=1).retrieve_documents("landlord roof rent")[0].doc_id
    hits = focused.retrieve("landlord roof rent")
    assert best == "lease" and len({h.doc_id for h in wide}) > 1
    assert hits and {h.doc_id for h in hits} == {"lease"}
    lease_chunks = sum(c.doc_id == "lease" for batch in index.store.iter_chunks() for c in batch)
    assert len(hits) == lease_chunks > len([h for h in wide if h.doc_id == "lease"])  # all of its chunks can come back
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    narrowed = focused.retrieve("landlord roof rent", filters={"kind": "nda"})
    assert len({h.doc_id for h in narrowed}) == 1 and narrowed[0].doc_id in {"nda", "zh"}  # filters rank documents too
    assert focused.retrieve("landlord", filters={"kind": "invoice"}) == []
    with pytest.raises(InvalidInputError, match="focus_documents"):
        index.as_retriever(focus_documents=-1)


def test_focus_ranks_inside_documents_by_bm25_when_the_encoder_cannot_read_the_query(index, monkeypatch):
    focused = index.as_retriever(top_k=5, focus_documents=1)
    monkeypatch.setattr(focused, "_readable", lambda query: False)
    hits = focused.retrieve("landlord roof")
    bm25 = index.as_retriever(top_k=5, mode="sparse").retrieve("landlord roof", filters={"doc_id": hits[0].doc_id})
    assert [(h.chunk_id, h.score) for h in hits] == [(h.chunk_id, h.score) for h in bm25]


def test_aggregation_rules():
    assert aggregate_document_scores([0.5, 0.9], "max") == 0.9
    soft = aggregate_document_scores([0.9, 0.89], "softmax")
    assert 0.9 < soft < aggregate_document_scores([0.9, 0.89, 0.88], "softmax")
    assert aggregate_document_scores([0.9], "topk_sum", k=2) == pytest.approx(0.45)


def test_neighbour_expansion_returns_the_window(index):
    plain = index.as_retriever(top_k=1).retrieve("The landlord repairs the roof.")[0]
    wide = index.as_retriever(top_k=1, expand_neighbors=1).retrieve("The landlord repairs the roof.")[0]
    assert wide.chunk_id == plain.chunk_id
    assert wide.start <= plain.start and wide.end >= plain.end and len(wide.text) > len(plain.text)
    assert index.get_document(wide.doc_id).text[wide.start : wide.end] == wide.text


def test_batch_matches_single(index):
    retriever = index.as_retriever(top_k=4)
    queries = ["rent", "secret information", "高血压"]
    batch = retriever.retrieve_batch(queries)
    for query, hits in zip(queries, batch):
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in retriever.retrieve(query)]


def test_bad_queries_and_top_k(index):
    retriever = index.as_retriever()
    for bad in (0, -3, MAX_TOP_K + 1, 2.5, True):
        with pytest.raises(InvalidInputError, match="top_k"):
            retriever.retrieve("rent", top_k=bad)
    with pytest.raises(InvalidInputError, match="empty"):
        retriever.retrieve("   ")
    with pytest.raises(InvalidInputError, match="1,048,576 characters"):
        retriever.retrieve("x" * 1_048_576)
    with pytest.raises(InvalidInputError, match="level"):
        index.as_retriever(level="page")
    assert len(retriever.retrieve("rent", top_k=MAX_TOP_K)) == index.store.counts()[1]
