"""Filter: parsed and checked once; SQLite's compiled filter agrees with the reference semantics everywhere."""

from __future__ import annotations

import random

import numpy as np
import pytest

from deepseek_rag import Chunk, ChunkStore, Document, Filter, InvalidInputError

BRANDS = ["trail", "peak", "x", None]


def catalogue(n: int = 120, seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        metadata = {"price": rng.choice([rng.randint(5, 300), rng.random() * 300, "120", None]),
                    "stock": rng.randint(0, 3), "in_stock": rng.random() < 0.5,
                    "tags": rng.sample(["boots", "waterproof", "kids", "sale"], rng.randint(0, 3)),
                    "title": rng.choice(["Hiking boots", "Trail shoes", "Rain jacket"])}
        brand = rng.choice(BRANDS)
        if brand is not None:
            metadata["brand"] = brand
        if rng.random() < 0.2:
            del metadata["stock"]
        docs.append(Document(f"p{i}", f"product {i}", metadata))
    return docs


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth < 2 and rng.random() < 0.35:
        op = rng.choice(["$and", "$or", "$not"])
        if op == "$not":
            return {"$not": random_filter(rng, depth + 1)}
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    key = rng.choice(["price", "stock", "brand", "in_stock", "tags", "title", "missing", "doc_id"])
    op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains"])
    number = rng.choice([0, 1, 2, 50, 120, 120.5])
    value = {"$eq": rng.choice([number, "trail", True, None, "p3"]), "$ne": rng.choice([number, "peak", False]),
             "$in": rng.sample([1, 2, "x", "trail", "p1", True], 2), "$nin": rng.sample([0, 3, "x", "peak", "p2"], 2),
             "$exists": rng.random() < 0.5, "$contains": rng.choice(["boots", "Trail", "sale", "x"])}.get(op, number)
    return {key: {op: value}}


def test_sqlite_agrees_with_the_reference_on_random_filters():
    docs = catalogue()
    store = ChunkStore()
    store.add_documents([(d, [Chunk(d.id, 0, 0, len(d.text), d.text)], [i + 1]) for i, d in enumerate(docs)])
    rng = random.Random(7)
    checked = 0
    for _ in range(400):
        spec = random_filter(rng)
        parsed = Filter.parse(spec)
        expected = {i + 1 for i, d in enumerate(docs) if parsed.matches(d.metadata, d.id)}
        assert set(store.chunk_ids_matching(parsed).tolist()) == expected, spec
        checked += bool(expected) and len(expected) < len(docs)
    assert checked > 60  # many filters select something, and not everything


@pytest.mark.parametrize("spec, message", [
    ({"price": {"$between": [1, 2]}}, "unknown filter operator '\\$between'"),
    ({"$xor": [{"a": 1}]}, "unknown filter operator '\\$xor'"),
    ({"price": {"$gt": [1, 2]}}, "takes one value"),
    ({"price": {"$gt": "120"}}, "compares numbers"),
    ({"tags": {"$contains": 5}}, "takes a string"),
    ({"a": {"$in": []}}, "empty list"),
    ({"a": {"$exists": "yes"}}, "true or false"),
    ({1: "x"}, "must be a string"),
    ({"a": {}}, "empty condition"),
    ({"$and": []}, "non-empty list"),
    ({"a": {"$eq": {"b": 1}}}, "takes one value"),
    ({"a": float("nan")}, "NaN"),
    ("party=acme", "must be a dict"),
])
def test_bad_filters_name_the_problem(spec, message):
    with pytest.raises(InvalidInputError, match=message):
        Filter.parse(spec)


def test_deep_nesting_is_refused():
    spec: dict = {"a": 1}
    for _ in range(10):
        spec = {"$not": spec}
    with pytest.raises(InvalidInputError, match="nested more than"):
        Filter.parse(spec)


def test_numpy_scalars_and_round_trip():
    parsed = Filter.parse({"stock": np.int64(2), "price": {"$lte": np.float32(99.5)}, "brand": np.array(["x", "y"])})
    assert parsed.matches({"stock": 2, "price": 10, "brand": "y"})
    assert Filter.parse(parsed.to_dict()) == parsed
    assert Filter.parse(None) is None and Filter.parse({}) is None
    assert Filter.all_of({"a": 1}, None, {"b": 2}).keys() == {"a", "b"}


def test_mongo_semantics_for_missing_keys_and_types():
    f = Filter.parse
    assert f({"brand": {"$ne": "x"}}).matches({})  # $ne / $nin match documents without the key
    assert f({"brand": {"$nin": ["x"]}}).matches({})
    assert not f({"price": {"$lte": 120}}).matches({"price": "100"})  # a string is not a number
    assert f({"in_stock": 1}).matches({"in_stock": True})  # JSON true is 1, as SQLite reads it
    assert f({"tags": {"$contains": "sale"}}).matches({"tags": ["boots", "sale"]})
    assert f({"title": {"$contains": "boot"}}).matches({"title": "Hiking boots"})
    assert not f({"missing": "x"}).matches({"other": 1})
