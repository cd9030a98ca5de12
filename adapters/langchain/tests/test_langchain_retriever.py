"""DeepSeekRAGRetriever for LangChain: the langchain-tests standard suite, plus what our users rely on
(offsets, metadata, filters, document level, LCEL chains, async)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_deepseek_rag import DeepSeekRAGRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from deepseek_rag import DocumentIndex


class TestDeepSeekRAGRetrieverStandard(RetrieversIntegrationTests):
    """The standard suite builds the retriever from the class and these params; `k` sets the result count."""

    _index_dir: str = ""

    @pytest.fixture(autouse=True)
    def _saved_index(self, tiny_index_dir, tiny_model_dir):
        type(self)._index_dir = str(tiny_index_dir)
        type(self)._model = str(tiny_model_dir)

    @property
    def retriever_constructor(self) -> type[DeepSeekRAGRetriever]:
        return DeepSeekRAGRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index_dir": self._index_dir, "model": self._model, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "who may terminate the agreement?"


@pytest.fixture(scope="module")
def retriever(tiny_index_dir, tiny_encoder):
    return DeepSeekRAGRetriever.from_index_dir(tiny_index_dir, encoder=tiny_encoder, k=3)


def test_class():
    assert BaseRetriever in DeepSeekRAGRetriever.__mro__


def test_documents_carry_offsets_score_and_metadata(retriever, core_documents):
    texts = {d.id: d.text for d in core_documents}
    results = retriever.invoke("payment is due")
    assert len(results) == 3
    for doc in results:
        meta = doc.metadata
        assert texts[meta["doc_id"]][meta["start"] : meta["end"]] == doc.page_content
        assert doc.id == f"{meta['doc_id']}::{meta['ordinal']}"
        assert "kind" in meta and "section" in meta
    scores = [d.metadata["score"] for d in results]
    assert scores == sorted(scores, reverse=True)


def test_query_equal_to_a_chunk_returns_it_first(retriever):
    chunk = retriever.index.store.chunks_of("clinic.txt")[0]
    top = retriever.invoke(chunk.text, k=1)[0]
    assert top.id == "clinic.txt::0"
    assert top.metadata["score"] == pytest.approx(1.0, abs=1e-4)


def test_filters_field_and_per_call(retriever, tiny_index_dir, tiny_encoder):
    per_call = retriever.invoke("salt", k=10, filters={"kind": "medical"})
    assert {d.metadata["doc_id"] for d in per_call} == {"clinic.txt", "zh.txt"}
    fixed = DeepSeekRAGRetriever.from_index_dir(tiny_index_dir, encoder=tiny_encoder, k=10, filters={"doc_id": ["story.txt"]})
    assert {d.metadata["doc_id"] for d in fixed.invoke("salt")} == {"story.txt"}
    ranged = retriever.invoke("salt", k=10, filters={"$or": [{"year": {"$gte": 2022}}, {"kind": {"$ne": "medical"}, "year": 2021}]})
    assert {d.metadata["doc_id"] for d in ranged} == {"clinic.txt", "contract.txt", "story.txt"}  # zh.txt has no year


def test_document_level(tiny_index_dir, tiny_encoder, core_documents):
    retriever = DeepSeekRAGRetriever.from_index_dir(tiny_index_dir, encoder=tiny_encoder, k=10, level="document")
    results = retriever.invoke("the quick brown fox")
    assert sorted(d.id for d in results) == sorted(d.id for d in core_documents)


def test_from_documents_keeps_ids_and_metadata(tiny_encoder):
    docs = [
        Document(page_content="Either party may terminate on notice.", metadata={"kind": "contract"}, id="a"),
        Document(page_content="Patients should reduce salt intake.", metadata={"kind": "medical"}),
    ]
    retriever = DeepSeekRAGRetriever.from_documents(docs, encoder=tiny_encoder, k=2)
    assert retriever.index.document_ids() == ["a", "1"]
    found = retriever.invoke("salt", filters={"kind": "medical"})
    assert [d.metadata["doc_id"] for d in found] == ["1"]


def test_from_texts_and_save(tmp_path, tiny_encoder, tiny_model_dir):
    retriever = DeepSeekRAGRetriever.from_texts(["one text about salt.", "another about law."], [{"n": 1}, {"n": 2}],
                                                ids=["x", "y"], encoder=tiny_encoder)
    retriever.index.save(tmp_path / "idx")
    reopened = DeepSeekRAGRetriever(index_dir=str(tmp_path / "idx"), model=str(tiny_model_dir))
    assert {d.metadata["doc_id"] for d in reopened.invoke("salt")} == {"x", "y"}


def test_needs_an_index():
    with pytest.raises(ValueError, match="index_dir"):
        DeepSeekRAGRetriever()


def test_bad_k_is_a_value_error(retriever):
    with pytest.raises(ValueError, match="top_k"):
        DeepSeekRAGRetriever(index=retriever.index, k=0)


def test_in_an_lcel_chain(retriever):
    prompts = []

    def fake_llm(prompt: str) -> str:
        prompts.append(prompt)
        return "answer"

    chain = retriever | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs)) | RunnableLambda(fake_llm)
    assert chain.invoke("governing law") == "answer"
    for doc in retriever.invoke("governing law"):
        assert doc.page_content in prompts[0]


async def test_concurrent_ainvoke_matches_invoke(retriever):
    queries = ["payment", "salt intake", "quick fox", "高血压"] * 5
    expected = [[d.id for d in retriever.invoke(q)] for q in queries]
    results = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
    assert [[d.id for d in docs] for docs in results] == expected


def test_index_is_not_serialised(retriever):
    assert "index" not in retriever.model_dump()
    assert isinstance(retriever.index, DocumentIndex)


def test_focus_rule_is_the_default_and_bad_values_are_value_errors(retriever):
    assert retriever.focus_documents == "auto" and retriever._core(3).focus_documents == "auto"
    off = DeepSeekRAGRetriever(index=retriever.index, k=3, focus_documents=0)
    assert off._core(3).focus_documents == 0
    with pytest.raises(ValueError, match="focus_documents"):
        DeepSeekRAGRetriever(index=retriever.index, focus_documents=-2)


def test_window_tokens_reaches_the_core_and_bad_values_are_value_errors(retriever):
    windowed = DeepSeekRAGRetriever(index=retriever.index, k=2, focus_documents=0, window_tokens=48)
    assert windowed._core(2).window_tokens == 48
    for document in windowed.invoke("salt"):
        text = retriever.index.get_document(document.metadata["doc_id"]).text
        assert text[document.metadata["start"] : document.metadata["end"]] == document.page_content
    with pytest.raises(ValueError, match="window_tokens"):
        DeepSeekRAGRetriever(index=retriever.index, window_tokens=-1)
