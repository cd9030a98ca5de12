"""DeepSeekRAGRetriever as LlamaIndex sees it: nodes, offsets, relationships, filters, persistence, async,
and the framework pieces users plug it into (query engine, fusion retriever, evaluator)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.evaluation import RetrieverEvaluator
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import NodeRelationship, ObjectType, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.bm25 import BM25Retriever
from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever

from deepseek_rag import DocumentIndex


def test_class():
    names_of_base_classes = [b.__name__ for b in DeepSeekRAGRetriever.__mro__]
    assert BaseRetriever.__name__ in names_of_base_classes


@pytest.fixture(scope="module")
def built(tiny_encoder, documents_factory):
    """One index over the corpus, contextual headers off so a chunk's own text is its exact query."""
    return DeepSeekRAGRetriever.from_defaults(
        documents=documents_factory(), encoder=tiny_encoder, contextual_headers=False
    )


@pytest.fixture
def retriever(built):
    """A fresh retriever (own settings) over the module's index."""
    return DeepSeekRAGRetriever(built.index, similarity_top_k=5)


def chunks_of(retriever: DeepSeekRAGRetriever, doc_id: str):
    return retriever.index.store.chunks_of(doc_id)


# ---------------------------------------------------------------------------------------------- nodes
def test_nodes_carry_offsets_metadata_and_relationships(retriever, corpus_texts):
    results = retriever.retrieve("who may terminate the agreement")
    assert len(results) == 5
    for result in results:
        node = result.node
        doc_id = node.metadata["doc_id"]
        ordinal = int(node.node_id.rsplit("::", 1)[1])
        assert node.node_id == f"{doc_id}::{ordinal}"
        assert corpus_texts[doc_id][node.start_char_idx : node.end_char_idx] == node.text
        assert node.metadata["kind"] in {"contract", "medical", "story"}
        source = node.relationships[NodeRelationship.SOURCE]
        assert source.node_id == doc_id and source.node_type == ObjectType.DOCUMENT
        assert node.ref_doc_id == doc_id
        n_chunks = len(chunks_of(retriever, doc_id))
        prev = node.relationships.get(NodeRelationship.PREVIOUS)
        nxt = node.relationships.get(NodeRelationship.NEXT)
        assert (prev.node_id if prev else None) == (f"{doc_id}::{ordinal - 1}" if ordinal > 0 else None)
        assert (nxt.node_id if nxt else None) == (f"{doc_id}::{ordinal + 1}" if ordinal + 1 < n_chunks else None)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_query_equal_to_a_chunk_returns_that_chunk_first(retriever):
    chunk = chunks_of(retriever, "contract.txt")[1]
    top = retriever.retrieve(chunk.text)[0]
    assert top.node.node_id == "contract.txt::1"
    assert top.score == pytest.approx(1.0, abs=1e-4)


def test_document_level_returns_one_node_per_document(built, corpus_texts):
    retriever = DeepSeekRAGRetriever(built.index, similarity_top_k=10, level="document")
    results = retriever.retrieve("salt intake")
    ids = [r.node.node_id for r in results]
    assert sorted(ids) == sorted(corpus_texts)  # every document once, keyed by its own id
    for r in results:
        assert r.node.ref_doc_id == r.node.node_id
        assert corpus_texts[r.node.node_id][r.node.start_char_idx : r.node.end_char_idx] == r.node.text


def test_focus_documents_returns_chunks_of_the_best_document_and_persists(built, tmp_path):
    best = DeepSeekRAGRetriever(built.index, similarity_top_k=1, level="document").retrieve("salt intake")[0].node.node_id
    focused = DeepSeekRAGRetriever(built.index, similarity_top_k=10, focus_documents=1)
    results = focused.retrieve("salt intake")
    assert results and {r.node.ref_doc_id for r in results} == {best}
    focused.persist(tmp_path / "idx")
    reloaded = DeepSeekRAGRetriever.from_persist_dir(tmp_path / "idx", encoder=built.index.encoder)
    assert reloaded.focus_documents == 1
    assert [r.node.node_id for r in reloaded.retrieve("salt intake")] == [r.node.node_id for r in results]


def test_the_focus_rule_is_the_default_and_persists_as_before(built, tmp_path):
    default = DeepSeekRAGRetriever(built.index, similarity_top_k=3)
    assert default.focus_documents == "auto" == default.core_retriever.focus_documents
    default.persist(tmp_path / "auto")
    assert "focus_documents" not in json.loads((tmp_path / "auto" / "retriever.json").read_text())
    assert DeepSeekRAGRetriever.from_persist_dir(tmp_path / "auto", encoder=built.index.encoder).focus_documents == "auto"
    off = DeepSeekRAGRetriever(built.index, similarity_top_k=3, focus_documents=0)
    off.persist(tmp_path / "off")
    assert DeepSeekRAGRetriever.from_persist_dir(tmp_path / "off", encoder=built.index.encoder).focus_documents == 0


def test_expand_neighbors_widens_text_to_neighbouring_chunks(built, corpus_texts):
    chunks = chunks_of(built, "contract.txt")
    assert len(chunks) >= 3
    retriever = DeepSeekRAGRetriever(built.index, similarity_top_k=1, expand_neighbors=1)
    node = retriever.retrieve(chunks[1].text)[0].node
    assert node.node_id == "contract.txt::1"
    assert (node.start_char_idx, node.end_char_idx) == (chunks[0].start, chunks[2].end)
    assert node.text == corpus_texts["contract.txt"][chunks[0].start : chunks[2].end]


# ---------------------------------------------------------------------------------------------- filters
def _doc_ids(retriever, query="notice of termination") -> set[str]:
    return {r.node.metadata["doc_id"] for r in retriever.retrieve(query)}


def test_metadata_filter_eq(built):
    flt = MetadataFilters(filters=[MetadataFilter(key="kind", value="medical", operator=FilterOperator.EQ)])
    retriever = DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=flt)
    assert _doc_ids(retriever) == {"clinic.txt", "zh.txt"}


def test_metadata_filter_in_and_and(built):
    flt = MetadataFilters(
        filters=[
            MetadataFilter(key="kind", value=["contract", "medical"], operator=FilterOperator.IN),
            MetadataFilter(key="year", value=2021),
        ],
        condition=FilterCondition.AND,
    )
    retriever = DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=flt)
    assert _doc_ids(retriever) == {"contract.txt"}


def test_metadata_filter_or_over_one_key_and_doc_id(built):
    flt = MetadataFilters(
        filters=[MetadataFilter(key="doc_id", value="story.txt"), MetadataFilter(key="doc_id", value="zh.txt")],
        condition=FilterCondition.OR,
    )
    retriever = DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=flt)
    assert _doc_ids(retriever) == {"story.txt", "zh.txt"}


def test_every_operator_and_nested_groups(built):
    """A LlamaIndex query with LTE and a nested OR group across keys, through our retriever."""
    nested = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2022, operator=FilterOperator.LTE),
            MetadataFilters(filters=[MetadataFilter(key="kind", value="story"), MetadataFilter(key="kind", value="medical")],
                            condition=FilterCondition.OR),
        ],
        condition=FilterCondition.AND,
    )
    assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=nested)) == {"story.txt", "clinic.txt"}
    cases = {
        FilterOperator.GT: (2021, {"clinic.txt", "zh.txt"}), FilterOperator.GTE: (2022, {"clinic.txt", "zh.txt"}),
        FilterOperator.LT: (2022, {"contract.txt", "story.txt"}), FilterOperator.NE: (2021, {"clinic.txt", "zh.txt"}),
        FilterOperator.NIN: ([2021, 2023], {"clinic.txt"}),
    }
    for operator, (value, expected) in cases.items():
        flt = MetadataFilters(filters=[MetadataFilter(key="year", value=value, operator=operator)])
        assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=flt)) == expected, operator
    text = MetadataFilters(filters=[MetadataFilter(key="kind", value="medi", operator=FilterOperator.TEXT_MATCH)])
    assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=text)) == {"clinic.txt", "zh.txt"}
    empty = MetadataFilters(filters=[MetadataFilter(key="lang", value=None, operator=FilterOperator.IS_EMPTY)])
    assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=empty)) == {"contract.txt", "clinic.txt", "story.txt"}
    negated = MetadataFilters(filters=[MetadataFilter(key="kind", value="medical")], condition=FilterCondition.NOT)
    assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=negated)) == {"contract.txt", "story.txt"}
    impossible = MetadataFilters(filters=[MetadataFilter(key="kind", value="story"), MetadataFilter(key="kind", value="x")])
    assert _doc_ids(DeepSeekRAGRetriever(built.index, similarity_top_k=10, filters=impossible)) == set()  # no error: no match


@pytest.mark.parametrize(
    "filters, message",
    [
        (MetadataFilters(filters=[MetadataFilter(key="kind", value="X", operator=FilterOperator.TEXT_MATCH_INSENSITIVE)]),
         "text_match_insensitive"),
        (MetadataFilters(filters=[MetadataFilter(key="kind", value=["a"], operator=FilterOperator.EQ)]), "use FilterOperator.IN"),
        (MetadataFilters(filters=[MetadataFilter(key="year", value="2021", operator=FilterOperator.GT)]), "compares numbers"),
    ],
)
def test_unsupported_filters_raise_clear_errors(built, filters, message):
    with pytest.raises(ValueError, match=message):
        DeepSeekRAGRetriever(built.index, filters=filters)


# ---------------------------------------------------------------------------------------------- constructors
def test_from_defaults_needs_exactly_one_source(documents, tiny_encoder):
    with pytest.raises(ValueError, match="exactly one of"):
        DeepSeekRAGRetriever.from_defaults(encoder=tiny_encoder)
    with pytest.raises(ValueError, match="exactly one of"):
        DeepSeekRAGRetriever.from_defaults(documents=documents, nodes=documents, encoder=tiny_encoder)


def test_bad_top_k_is_a_value_error(built):
    with pytest.raises(ValueError, match="top_k"):
        DeepSeekRAGRetriever(built.index, similarity_top_k=0)


def test_nodes_are_indexed_by_node_id_and_keep_their_source(documents, tiny_encoder):
    nodes = SentenceSplitter(chunk_size=40, chunk_overlap=0).get_nodes_from_documents(documents)
    assert len(nodes) > len(documents)
    retriever = DeepSeekRAGRetriever.from_defaults(
        nodes=nodes, encoder=tiny_encoder, level="document", similarity_top_k=3, contextual_headers=False
    )
    target = nodes[2]
    results = retriever.retrieve(target.text)
    assert results[0].node.node_id == target.node_id  # document level: the ids of the nodes passed in
    assert results[0].node.metadata["ref_doc_id"] == target.ref_doc_id
    assert results[0].node.text == target.text


# ---------------------------------------------------------------------------------------------- persistence
def test_persist_and_reload_return_identical_results(tmp_path, documents, tiny_encoder):
    flt = MetadataFilters(filters=[MetadataFilter(key="year", value=[2021, 2022], operator=FilterOperator.IN)])
    retriever = DeepSeekRAGRetriever.from_defaults(
        documents=documents, encoder=tiny_encoder, similarity_top_k=4, expand_neighbors=1, filters=flt
    )
    before = retriever.retrieve("terminate the agreement on notice")
    retriever.persist(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "retriever.json").read_text())["similarity_top_k"] == 4

    reloaded = DeepSeekRAGRetriever.from_persist_dir(tmp_path / "idx", model=str(tiny_encoder.model_name))
    after = reloaded.retrieve("terminate the agreement on notice")
    assert [(r.node.node_id, r.node.text, r.node.start_char_idx) for r in after] == [
        (r.node.node_id, r.node.text, r.node.start_char_idx) for r in before
    ]
    assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-6)
    assert {r.node.metadata["year"] for r in after} <= {2021, 2022}
    assert DocumentIndex.load(tmp_path / "idx").document_ids() == [d.doc_id for d in documents]


def test_from_persist_dir_refuses_unknown_settings_version(tmp_path, built):
    built.persist(tmp_path / "idx")
    (tmp_path / "idx" / "retriever.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        DeepSeekRAGRetriever.from_persist_dir(tmp_path / "idx", encoder=built.index.encoder)


# ---------------------------------------------------------------------------------------------- async
@pytest.mark.asyncio
async def test_concurrent_aretrieve_matches_retrieve(retriever):
    queries = ["terminate the agreement", "salt intake", "the quick brown fox", "高血压", "payment due"] * 4
    expected = [[(r.node.node_id, round(r.score, 5)) for r in retriever.retrieve(q)] for q in queries]
    results = await asyncio.gather(*(retriever.aretrieve(q) for q in queries))
    assert [[(r.node.node_id, round(r.score, 5)) for r in nodes] for nodes in results] == expected


@pytest.mark.asyncio
async def test_aretrieve_does_not_block_the_event_loop(retriever, monkeypatch):
    release = threading.Event()
    search = retriever.core_retriever.retrieve

    def gated(*args, **kwargs):
        assert release.wait(timeout=10), "the event loop was blocked while retrieving"
        return search(*args, **kwargs)

    monkeypatch.setattr(retriever.core_retriever, "retrieve", gated)
    task = asyncio.create_task(retriever.aretrieve("terminate"))
    await asyncio.sleep(0.05)  # runs only if aretrieve handed the search to a thread
    release.set()
    assert len(await asyncio.wait_for(task, timeout=10)) == 5


# ---------------------------------------------------------------------------------------------- framework
def test_query_engine_puts_retrieved_chunks_in_the_prompt(retriever, recording_llm, corpus_texts):
    engine = RetrieverQueryEngine.from_args(retriever, llm=recording_llm)
    response = engine.query("who may terminate the agreement?")
    assert str(response) == recording_llm.reply
    prompt = "\n".join(recording_llm.prompts)
    assert "who may terminate the agreement?" in prompt
    assert response.source_nodes
    for source in response.source_nodes:
        node = source.node
        assert node.text in prompt
        doc_id = node.relationships[NodeRelationship.SOURCE].node_id
        assert corpus_texts[doc_id][node.start_char_idx : node.end_char_idx] == node.text


def test_query_engine_streams(retriever, recording_llm):
    engine = RetrieverQueryEngine.from_args(retriever, llm=recording_llm, streaming=True)
    response = engine.query("governing law")
    assert "".join(response.response_gen) == recording_llm.reply
    assert len(response.source_nodes) == 5


@pytest.fixture
def fusion_parts(retriever, documents, recording_llm):
    bm25 = BM25Retriever.from_defaults(
        nodes=SentenceSplitter(chunk_size=64, chunk_overlap=0).get_nodes_from_documents(documents), similarity_top_k=5
    )
    return [retriever, bm25], recording_llm


def _check_fused(results):
    ids = [r.node.node_id for r in results]
    assert len(ids) == len(set(ids)) == 6
    assert any("::" in i for i in ids)  # ours
    assert any("::" not in i for i in ids)  # BM25's
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_query_fusion_retriever_sync(fusion_parts):
    retrievers, llm = fusion_parts
    fusion = QueryFusionRetriever(
        retrievers, llm=llm, num_queries=1, mode="reciprocal_rerank", similarity_top_k=6, use_async=False
    )
    _check_fused(fusion.retrieve("terminate the agreement on notice"))


@pytest.mark.asyncio
async def test_query_fusion_retriever_async(fusion_parts):
    retrievers, llm = fusion_parts
    fusion = QueryFusionRetriever(
        retrievers, llm=llm, num_queries=1, mode="reciprocal_rerank", similarity_top_k=6, use_async=True
    )
    _check_fused(await fusion.aretrieve("terminate the agreement on notice"))


def test_retriever_evaluator(retriever):
    chunk = chunks_of(retriever, "clinic.txt")[1]
    evaluator = RetrieverEvaluator.from_metric_names(["hit_rate", "mrr"], retriever=retriever)
    result = evaluator.evaluate(query=chunk.text, expected_ids=["clinic.txt::1"])
    assert result.metric_vals_dict == {"hit_rate": 1.0, "mrr": 1.0}
    miss = evaluator.evaluate(query=chunk.text, expected_ids=["no-such-node"])
    assert miss.metric_vals_dict["hit_rate"] == 0.0


@pytest.mark.asyncio
async def test_retriever_evaluator_async(retriever):
    chunk = chunks_of(retriever, "story.txt")[0]
    evaluator = RetrieverEvaluator.from_metric_names(["hit_rate", "mrr"], retriever=retriever)
    result = await evaluator.aevaluate(query=chunk.text, expected_ids=["story.txt::0"])
    assert result.metric_vals_dict["mrr"] == 1.0


def test_text_nodes_serialise(retriever):
    node = retriever.retrieve("payment")[0].node
    again = TextNode.model_validate_json(node.model_dump_json())
    assert again.node_id == node.node_id and again.start_char_idx == node.start_char_idx


def test_window_tokens_returns_bounded_windows_with_exact_offsets_and_persists(built, corpus_texts, tmp_path):
    plain = DeepSeekRAGRetriever(built.index, similarity_top_k=2, focus_documents=0).retrieve("salt intake")
    size = 2 * max(len(built.index.encoder.token_ids(r.node.text)) for r in plain)  # room to grow every chunk
    windowed = DeepSeekRAGRetriever(built.index, similarity_top_k=2, focus_documents=0, window_tokens=size)
    results = windowed.retrieve("salt intake")
    assert [r.node.node_id for r in results][:1] == [plain[0].node.node_id]
    for r in results:
        assert corpus_texts[r.node.ref_doc_id][r.node.start_char_idx : r.node.end_char_idx] == r.node.text
        assert len(built.index.encoder.token_ids(r.node.text)) <= size
    first, matched = results[0].node, plain[0].node
    assert first.start_char_idx <= matched.start_char_idx and matched.end_char_idx <= first.end_char_idx
    windowed.persist(tmp_path / "w")
    assert DeepSeekRAGRetriever.from_persist_dir(tmp_path / "w", encoder=built.index.encoder).window_tokens == size
    with pytest.raises(ValueError, match="window_tokens"):
        DeepSeekRAGRetriever(built.index, window_tokens=0)
