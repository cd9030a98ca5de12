"""A product catalogue's filters end to end (DocumentIndex, IVF vectors, declared filter_fields): the bad inputs
a nightly upsert job meets, and filtered results against brute force at broad and narrow selectivities."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, Filter, IndexSettings, InvalidInputError
from deepseek_rag.storage.rebuild import live_vectors

BRANDS = ["Ridgeline", "Summit", "Trailmate", "Alpenwood", "Northpeak"]
KINDS = ["boots", "jacket", "tent", "socks"]


def product(i: int) -> Document:
    brand, kind = BRANDS[i % 5], KINDS[(i // 5) % 4]
    return Document(f"p{i}", f"{brand} {kind} number {i}, waterproof and light",
                    {"brand": brand, "category": kind, "price": float(20 + (i * 37) % 200), "stock": i % 4})


@pytest.fixture(scope="module")
def catalogue(tiny_model_dir, tmp_path_factory):
    encoder = DualEncoder(model=str(tiny_model_dir))
    settings = IndexSettings(index_spec="IVF4,Flat", filter_fields=["brand", "category", "price", "stock"])
    index = DocumentIndex.build([product(i) for i in range(400)], encoder, settings, progress=False)
    index.save(tmp_path_factory.mktemp("catalogue") / "products.idx")
    return index


def doc_ids(index, query, filters, k=10):
    return [d.doc_id for d in index.as_retriever(top_k=k).retrieve_documents(query, filters=filters)]


def test_a_key_no_document_has_and_a_filter_matching_nothing_give_empty_results(catalogue):
    assert doc_ids(catalogue, "waterproof boots", {"colour": "red"}) == []
    assert doc_ids(catalogue, "waterproof boots", {"price": {"$gt": 10_000}}) == []
    assert doc_ids(catalogue, "waterproof boots", {"$and": [{"brand": "Summit"}, {"brand": "Ridgeline"}]}) == []


@pytest.mark.parametrize("spec, message", [
    ({"price": {"$near": 100}}, "unknown filter operator"),
    ({"price": {"$gt": [100, 200]}}, "takes one value"),
    ({"price": {"$contains": 100}}, "takes a string"),
])
def test_bad_filters_are_refused_before_searching(catalogue, spec, message):
    with pytest.raises(InvalidInputError, match=message):
        doc_ids(catalogue, "boots", spec)


def test_deeply_nested_filters_are_refused(catalogue):
    spec: dict = {"brand": "Summit"}
    for _ in range(9):
        spec = {"$or": [spec, {"stock": 0}]}
    with pytest.raises(InvalidInputError, match="nested more than 8 levels"):
        doc_ids(catalogue, "boots", spec)


def test_a_string_price_in_an_upsert_batch_is_kept_and_a_range_filter_names_what_it_skips(tiny_model_dir, caplog):
    encoder = DualEncoder(model=str(tiny_model_dir))
    index = DocumentIndex.build([product(i) for i in range(40)], encoder, IndexSettings(filter_fields=["price"]),
                                progress=False)
    try:
        odd = Document("p-odd", "Summit boots number odd, waterproof and light",
                       {"brand": "Summit", "category": "boots", "price": "99.00", "stock": 3})
        index.upsert_documents([product(1), odd], progress=False)
        hits = index.as_retriever(top_k=400).retrieve_documents("Summit boots", filters={"brand": "Summit"})
        assert {d.doc_id: d.metadata["price"] for d in hits}["p-odd"] == "99.00"  # stored as given
        with caplog.at_level(logging.WARNING, logger="deepseek_rag"):
            cheap = doc_ids(index, "Summit boots", {"price": {"$lte": 120}}, k=400)
        assert "p-odd" not in cheap and cheap
        assert any("skips 1 document" in r.message and "p-odd" in r.message for r in caplog.records), caplog.text
    finally:
        index.close()


@pytest.mark.parametrize("spec", [
    {"price": {"$lte": 120}},  # about half
    {"category": "tent", "brand": {"$nin": ["Summit", "Alpenwood"]}},  # about 15%
    {"$and": [{"brand": "Northpeak"}, {"category": "socks"}, {"stock": {"$gt": 0}}]},  # about 4%
    {"$or": [{"price": {"$lt": 25}}, {"$not": {"stock": {"$in": [0, 1, 2]}}}], "brand": "Trailmate"},
])
def test_filtered_results_match_brute_force(catalogue, spec):
    """The dense side's top 10 under a filter equals exact inner product over every product the filter passes."""
    snapshot = catalogue.snapshot()
    chunks = [c for batch in snapshot.iter_chunks() for c in batch]
    parsed = Filter.parse(spec)
    passing = [c for c in chunks if parsed.matches(c.metadata, c.doc_id)]
    assert 0 < len(passing) < len(chunks)
    query = catalogue.encoder.encode_queries(["light waterproof boots"])
    ids, vectors = live_vectors(snapshot)
    row = {int(i): n for n, i in enumerate(ids)}
    stored = vectors[[row[c.id] for c in passing]]
    truth = {passing[i].id for i in np.argsort(-(stored @ query[0]))[:10]}
    _, found = catalogue.search_vectors(query, 10, filters=spec)
    assert set(found[0][found[0] >= 0].tolist()) == truth


def test_selectivity_is_measured_without_bias_on_a_periodic_catalogue(tiny_model_dir):
    """Products written in category order i % 20 (as exports and generators do): an evenly spaced sample of
    every 2nd row would see the 10 even categories only, and read a 5% filter as 0% or 10%."""
    categories = [f"cat{c}" for c in range(20)]
    docs = [Document(f"p{i}", f"item {i}", {"category": categories[i % 20], "price": float(i % 100)}) for i in range(4000)]
    index = DocumentIndex.build(docs, DualEncoder(model=str(tiny_model_dir)), IndexSettings(
        dense="off", filter_fields=["category"], contextual_headers=False))
    planner = index.snapshot().planner
    shares = [planner.selectivity(Filter.parse({"category": c})) for c in categories]
    assert all(0.02 <= share <= 0.09 for share in shares), shares
    assert 0.4 <= planner.selectivity(Filter.parse({"price": {"$lt": 50}})) <= 0.6
