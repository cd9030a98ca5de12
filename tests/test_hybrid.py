"""Retrieval modes: dense, sparse and hybrid, at chunk and document level, with filters and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError
from deepseek_rag.ingest.chunking import ChunkingConfig
from deepseek_rag.cli import cli
from deepseek_rag.retrieval.retriever import MODES

DOCS = [
    Document("lease", "The tenant pays rent monthly. " * 6 + "The landlord repairs the roof. " * 6, {"kind": "lease"}),
    Document("nda", "Confidential information stays secret. " * 6 + "The term is two years. " * 6, {"kind": "nda"}),
    Document("bp", "高血压患者应当减少盐的摄入。" * 4 + "糖尿病的早期症状包括多饮、多尿。" * 4, {"kind": "medical"}),
    Document("mixed", "COVID-19疫苗的副作用包括发热。mRNA vaccines may cause a mild fever.", {"kind": "medical"}),
]


@pytest.fixture(scope="module")
def index(tiny_model_dir):
    encoder = DualEncoder(model=str(tiny_model_dir))
    return DocumentIndex.build(DOCS, encoder, chunking=ChunkingConfig(max_tokens=24, overlap=4))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_returns_sorted_hits_that_point_into_the_source(index, mode):
    hits = index.as_retriever(top_k=5, mode=mode).retrieve("who repairs the roof")
    assert hits and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        assert index.get_document(hit.doc_id).text[hit.start : hit.end] == hit.text
    if mode != "dense":  # the tiny model's vectors mean nothing; BM25 finds the roof
        assert hits[0].doc_id == "lease"


@pytest.mark.parametrize("mode", MODES)
def test_document_level_works_in_every_mode(index, mode):
    retriever = index.as_retriever(top_k=3, mode=mode)
    for rule in ("max", "softmax", "topk_sum"):
        docs = retriever.retrieve_documents("rent and confidential secrets", aggregation=rule)
        assert 0 < len(docs) <= 3 and len({d.doc_id for d in docs}) == len(docs)
        assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
        assert all(d.hits and all(h.doc_id == d.doc_id for h in d.hits) for d in docs)
    if mode == "sparse":  # the tiny model's vectors mean nothing; BM25 finds both
        assert {d.doc_id for d in docs[:2]} == {"lease", "nda"}


def test_hybrid_fuses_both_sides(index):
    dense = index.as_retriever(top_k=50, mode="dense").retrieve("landlord roof")
    sparse = index.as_retriever(top_k=50, mode="sparse").retrieve("landlord roof")
    hybrid = index.as_retriever(top_k=50, mode="hybrid", fusion="rrf").retrieve("landlord roof")
    assert {h.chunk_id for h in hybrid} == {h.chunk_id for h in dense} | {h.chunk_id for h in sparse}
    dense_rank = {h.chunk_id: r for r, h in enumerate(dense, 1)}
    sparse_rank = {h.chunk_id: r for r, h in enumerate(sparse, 1)}
    for hit in hybrid:  # textbook RRF over the two sides' ranks
        expected = sum(1 / (60 + ranks[hit.chunk_id]) for ranks in (dense_rank, sparse_rank) if hit.chunk_id in ranks)
        assert hit.score == pytest.approx(expected)
    weighted = index.as_retriever(top_k=5, mode="hybrid", fusion="weighted", sparse_weight=1.0).retrieve("landlord roof")
    assert [h.chunk_id for h in weighted][: len(sparse[:5])] == [h.chunk_id for h in sparse[:5]]
    assert index.as_retriever(top_k=5, mode="hybrid", sparse_weight=0.0).retrieve("landlord roof")[0].chunk_id == dense[0].chunk_id


def test_mode_is_a_constructor_and_a_call_option(index):
    retriever = index.as_retriever(top_k=3)
    assert retriever.mode in MODES
    assert [h.chunk_id for h in retriever.retrieve("rent", mode="sparse")] == [
        h.chunk_id for h in index.as_retriever(top_k=3, mode="sparse").retrieve("rent")
    ]
    vectors = index.encoder.encode_queries(["rent", "roof"])
    by_vectors = retriever.search_by_vectors(vectors, 3, queries=["rent", "roof"], mode="hybrid")
    assert [[h.chunk_id for h in hits] for hits in by_vectors] == [
        [h.chunk_id for h in hits] for hits in retriever.retrieve_batch(["rent", "roof"], mode="hybrid")
    ]
    docs = retriever.documents_by_vectors(vectors, 2, queries=["rent", "roof"], mode="sparse")
    assert [d[0].doc_id for d in docs] == ["lease", "lease"]
    with pytest.raises(InvalidInputError, match="2 queries for 1 query vectors"):
        retriever.search_by_vectors(vectors[:1], 3, queries=["rent", "roof"])


def test_filters_apply_to_both_sides(index):
    for mode in MODES:
        retriever = index.as_retriever(top_k=50, mode=mode)
        assert {h.doc_id for h in retriever.retrieve("roof 高血压", filters={"kind": "nda"})} <= {"nda"}
        assert {d.doc_id for d in retriever.retrieve_documents("roof 高血压", filters={"kind": "medical"})} <= {"bp", "mixed"}
        assert retriever.retrieve("roof", filters={"kind": "invoice"}) == []


def test_bad_options_are_clear_errors(index, tiny_model_dir):
    with pytest.raises(InvalidInputError, match="mode='bm25'"):
        index.as_retriever(mode="bm25")
    with pytest.raises(InvalidInputError, match="fusion='max'"):
        index.as_retriever(fusion="max")
    with pytest.raises(InvalidInputError, match="sparse_weight=1.5"):
        index.as_retriever(sparse_weight=1.5)
    dense_only = DocumentIndex.build(DOCS[:1], DualEncoder(model=str(tiny_model_dir)), sparse={"enabled": False})
    assert dense_only.as_retriever().mode == "dense"
    with pytest.raises(InvalidInputError, match="sparse"):
        dense_only.as_retriever(mode="hybrid")


# ---------------------------------------------------------------------------------------- bad input
def test_text_mixing_scripts(index):
    for query in ("COVID-19疫苗 side effects", "mRNA 疫苗 fever"):
        assert index.as_retriever(top_k=1, mode="sparse").retrieve(query)[0].doc_id == "mixed"
        assert index.as_retriever(top_k=2, mode="hybrid").retrieve(query)


def test_traditional_query_finds_simplified_document(index):
    hits = index.as_retriever(top_k=1, mode="sparse").retrieve("高血壓患者應當減少鹽的攝入")
    assert hits[0].doc_id == "bp"


def test_full_width_punctuation_and_letters(index):
    assert index.as_retriever(top_k=1, mode="sparse").retrieve("ｌａｎｄｌｏｒｄ，ｒｏｏｆ！")[0].doc_id == "lease"
    assert index.as_retriever(top_k=1, mode="sparse").retrieve("糖尿病？！（症状）")[0].doc_id == "bp"


def test_query_without_terms_falls_back_to_dense(index):
    query = "？？！。。。"
    assert index.as_retriever(mode="sparse").retrieve(query) == []
    assert index.as_retriever(mode="sparse").retrieve_documents(query) == []
    dense = index.as_retriever(top_k=4, mode="dense").retrieve(query)
    hybrid = index.as_retriever(top_k=4, mode="hybrid").retrieve(query)
    assert [h.chunk_id for h in hybrid] == [h.chunk_id for h in dense]
    assert [d.doc_id for d in index.as_retriever(top_k=2, mode="hybrid").retrieve_documents(query)] == [
        d.doc_id for d in index.as_retriever(top_k=2, mode="dense").retrieve_documents(query)
    ]


def test_document_text_without_terms_is_indexed(index, tiny_model_dir):
    small = DocumentIndex.build([Document("p", "？？！……"), DOCS[0]], DualEncoder(model=str(tiny_model_dir)))
    assert {h.doc_id for h in small.as_retriever(mode="sparse").retrieve("roof")} == {"lease"}
    assert small.as_retriever(top_k=2, mode="hybrid").retrieve("？")


def test_a_query_the_encoder_cannot_read_is_answered_by_bm25(tiny_model_dir):
    """The tiny vocabulary has no Cyrillic (as the bundled MiniLM has little Chinese): fusing its vectors in
    would only add noise, so hybrid gives BM25's ranking."""
    docs = [Document(f"ru{i}", text) for i, text in enumerate([
        "Пациенты с гипертонией должны есть меньше соли.", "Диабет вызывает жажду и частое мочеиспускание.",
        "Арендатор платит аренду ежемесячно.", "The landlord repairs the roof."])]
    small = DocumentIndex.build(docs, DualEncoder(model=str(tiny_model_dir)))
    query = "гипертонией соли"
    sparse = small.as_retriever(top_k=4, mode="sparse")
    for fusion in ("weighted", "rrf"):
        hybrid = small.as_retriever(top_k=4, mode="hybrid", fusion=fusion)
        assert [h.chunk_id for h in hybrid.retrieve(query)][:1] == [h.chunk_id for h in sparse.retrieve(query)] == [1]
        assert hybrid.retrieve_documents(query)[0].doc_id == "ru0"
        assert len(hybrid.retrieve("аренду")) == 1 and len(hybrid.retrieve("roof")) == 4  # readable: both sides


@pytest.mark.parametrize("query", ["Привет, как дела?", "مرحبا بالعالم", "안녕하세요 세계", "こんにちは世界"])
def test_query_in_a_language_the_index_lacks(index, query):
    assert index.as_retriever(mode="sparse").retrieve(query) == []
    assert index.as_retriever(top_k=3, mode="hybrid").retrieve(query)  # dense results, no crash
    assert index.as_retriever(top_k=3, mode="hybrid").retrieve_documents(query)


# ---------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def saved(index, tmp_path_factory):
    return index.save(tmp_path_factory.mktemp("hybrid") / "idx")


def test_cli_query_modes(saved):
    runner = CliRunner()
    for args in (["--mode", "sparse"], ["--mode", "hybrid", "--fusion", "weighted", "--sparse-weight", "0.7"], []):
        result = runner.invoke(cli, ["query", str(saved), "landlord roof", "--json", "--top-k", "2", *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["hits"][0]["doc_id"] == "lease"
    result = runner.invoke(cli, ["query", str(saved), "roof", "--mode", "bm25"])
    assert result.exit_code == 2 and "bm25" in result.output


def test_cli_eval_modes(saved, tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "landlord roof repairs"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tlease\t1\n")
    for mode in MODES:
        result = CliRunner().invoke(cli, ["eval", "--data", str(tmp_path), "--index", str(saved), "--mode", mode, "--json"])
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.output)
        assert metrics["mode"] == mode and metrics["queries"] == 1
        if mode != "dense":
            assert metrics["ndcg@10"] == 1.0
