"""examples/product_search.py runs end to end on a tiny model: filters hold, and the daily update shows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "product_search.py"


def load_example():
    spec = importlib.util.spec_from_file_location("product_search_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def passes(metadata: dict) -> bool:
    return metadata["price"] <= 120 and metadata["stock"] > 0 and metadata["brand"] != "Northpeak"


def test_product_search_filters_and_the_daily_update(tiny_model_dir, capsys):
    example = load_example()
    results = example.main(model=str(tiny_model_dir))
    before = {product_id for product_id, _, _ in results["before"]}
    after = {product_id for product_id, _, _ in results["after"]}
    assert all(passes(m) for _, _, m in results["before"] + results["after"])
    # under 120 with stock and another brand: boot-1, boot-4 (and the jacket, pack and socks may follow)
    assert {"boot-1", "boot-4"} <= before and not {"boot-2", "boot-3", "boot-5"} & before
    # boot-2 dropped to 99, boot-3 was restocked, boot-1 sold out, boot-4 was delisted
    assert {"boot-2", "boot-3"} <= after and not {"boot-1", "boot-4"} & after
    printed = capsys.readouterr().out
    assert "after the daily update (version " in printed and "boot-2" in printed


def test_product_search_reads_a_catalogue_file(tiny_model_dir, tmp_path):
    example = load_example()
    path = tmp_path / "mine.jsonl"
    products = [{"id": f"p{i}", "title": f"Trail shoe {i}", "description": "A light waterproof trail shoe.",
                 "brand": "Acme" if i % 2 else "Other", "price": 50 + 30 * i, "stock": i % 3, "category": "shoes"}
                for i in range(6)]
    path.write_text("\n".join(json.dumps(p) for p in products) + "\n", encoding="utf-8")
    results = example.main(str(path), model=str(tiny_model_dir))
    found = {product_id for product_id, _, _ in results["before"]}
    assert found == {p["id"] for p in products if p["price"] <= 120 and p["stock"] > 0}
