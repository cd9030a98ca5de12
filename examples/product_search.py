"""Product search over a catalogue in JSONL, with filters and a daily update, offline with the bundled model.

    python examples/product_search.py                      # a small sample catalogue, written to a temp folder
    python examples/product_search.py products.jsonl       # your own: one product per line

A product line holds ``id``, ``title``, ``description``, ``brand``, ``price``, ``stock`` and ``category``. The
title and description are what is searched (hybrid: vectors and BM25); the rest is metadata that filters read —
"waterproof hiking boots under 120, in stock, not brand X" is ``{"price": {"$lte": 120}, "stock": {"$gt": 0},
"brand": {"$ne": "X"}}``. The filtered keys are declared as ``filter_fields``, so every segment indexes them and a
narrow filter reads only the rows it matches. The daily update upserts changed products (a new price, new
stock, a new description) and deletes delisted ones, then publishes them as one new version: a process
searching the index keeps answering from the old version until then.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexSettings

FILTER_FIELDS = ["price", "stock", "brand", "category"]
SAMPLE = [
    ("boot-1", "Ridgeline waterproof leather hiking boots", "Full-grain leather boots with a waterproof membrane and a "
     "grippy rubber sole for muddy trails.", "Ridgeline", 119.0, 14, "hiking boots"),
    ("boot-2", "Summit GTX waterproof hiking boots", "Lightweight mid-cut boots with a waterproof lining, made for long "
     "days on rocky ground.", "Summit", 165.0, 3, "hiking boots"),
    ("boot-3", "Trailmate waterproof hiking boots for kids", "Waterproof suede boots with a padded collar and easy "
     "lacing for young hikers.", "Trailmate", 59.5, 0, "hiking boots"),
    ("boot-4", "Alpenwood suede hiking boots", "Breathable suede boots for dry summer hikes; not waterproof.",
     "Alpenwood", 89.0, 22, "hiking boots"),
    ("boot-5", "Northpeak waterproof winter boots", "Insulated waterproof boots with a fleece lining for snow and "
     "slush.", "Northpeak", 110.0, 7, "winter boots"),
    ("jacket-1", "Ridgeline packable rain jacket", "A waterproof, breathable shell that packs into its own pocket.",
     "Ridgeline", 95.0, 30, "rain jackets"),
    ("jacket-2", "Northpeak down jacket", "Warm 700-fill down jacket with a water-repellent finish.", "Northpeak", 180.0,
     5, "down jackets"),
    ("tent-1", "Summit two-person backpacking tent", "A freestanding tent with two doors, 1.6 kg packed.", "Summit",
     240.0, 4, "tents"),
    ("pack-1", "Trailmate 30 litre daypack", "A daypack with a rain cover, hip belt and hydration sleeve.", "Trailmate",
     70.0, 18, "backpacks"),
    ("socks-1", "Alpenwood merino hiking socks", "Cushioned merino wool socks that keep feet dry on long hikes.",
     "Alpenwood", 18.0, 120, "socks"),
]


def write_sample(path: Path) -> Path:
    """The sample catalogue as JSONL (the format ``load_products`` reads)."""
    with open(path, "w", encoding="utf-8") as handle:
        for product_id, title, description, brand, price, stock, category in SAMPLE:
            handle.write(json.dumps({"id": product_id, "title": title, "description": description, "brand": brand,
                                     "price": price, "stock": stock, "category": category}) + "\n")
    return path


def product_document(product: dict) -> Document:
    """One product as a document: title and description are searched, everything else is filterable metadata."""
    text = f"{product['title']}. {product['description']}"
    metadata = {key: value for key, value in product.items() if key not in ("id", "description")}
    return Document(str(product["id"]), text, metadata)


def load_products(path: str | Path) -> list[Document]:
    with open(path, encoding="utf-8") as handle:
        return [product_document(json.loads(line)) for line in handle if line.strip()]


def build_index(products: Iterable[Document], encoder: DualEncoder | None = None) -> DocumentIndex:
    return DocumentIndex.build(products, encoder, IndexSettings(filter_fields=FILTER_FIELDS))


def search(index: DocumentIndex, query: str, *, max_price: float | None = None, in_stock: bool = False,
           not_brands: Iterable[str] = (), top_k: int = 5) -> list[tuple[str, float, dict]]:
    """(product id, score, metadata) of the best products for ``query`` that pass the given conditions."""
    conditions: dict = {}
    if max_price is not None:
        conditions["price"] = {"$lte": max_price}
    if in_stock:
        conditions["stock"] = {"$gt": 0}
    if not_brands:
        conditions["brand"] = {"$nin": list(not_brands)}
    documents = index.as_retriever(top_k=top_k).retrieve_documents(query, filters=conditions)
    return [(d.doc_id, d.score, d.metadata) for d in documents]


def daily_update(folder: Path, changed: list[dict], delisted: list[str], encoder: DualEncoder | None = None) -> int:
    """Upsert ``changed`` products and delete ``delisted`` ids as one new version of the index at ``folder``."""
    index = DocumentIndex.load(folder, encoder)
    try:
        index.upsert_documents([product_document(p) for p in changed])
        index.delete_documents(delisted, missing_ok=True)
        index.save()
        return index.snapshot().version
    finally:
        index.close()


def main(catalogue: str | None = None, model: str | None = None) -> dict[str, list[tuple[str, float, dict]]]:
    encoder = DualEncoder(model=model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(catalogue) if catalogue else write_sample(Path(tmp) / "products.jsonl")
        folder = Path(tmp) / "products.idx"
        build_index(load_products(path), encoder).save(folder)
        index = DocumentIndex.load(folder, encoder, writable=False)
        query = "waterproof hiking boots"
        results = {"before": search(index, query, max_price=120, in_stock=True, not_brands=["Northpeak"])}
        print(f"{query!r} under 120, in stock, not Northpeak:")
        for product_id, score, metadata in results["before"]:
            print(f"  {score:.3f}  {product_id:9} {metadata['title']} — {metadata['price']} ({metadata['stock']} in stock)")

        # The next morning: a price drop, a restock, a sold-out product, one delisted.
        version = daily_update(folder, [
            {"id": "boot-2", "title": "Summit GTX waterproof hiking boots", "description": "Lightweight mid-cut boots "
             "with a waterproof lining, made for long days on rocky ground.", "brand": "Summit", "price": 99.0,
             "stock": 3, "category": "hiking boots"},
            {"id": "boot-3", "title": "Trailmate waterproof hiking boots for kids", "description": "Waterproof suede "
             "boots with a padded collar and easy lacing for young hikers.", "brand": "Trailmate", "price": 59.5,
             "stock": 12, "category": "hiking boots"},
            {"id": "boot-1", "title": "Ridgeline waterproof leather hiking boots", "description": "Full-grain leather "
             "boots with a waterproof membrane and a grippy rubber sole for muddy trails.", "brand": "Ridgeline",
             "price": 119.0, "stock": 0, "category": "hiking boots"},
        ], delisted=["boot-4"], encoder=encoder)
        index.refresh()
        results["after"] = search(index, query, max_price=120, in_stock=True, not_brands=["Northpeak"])
        print(f"after the daily update (version {version}):")
        for product_id, score, metadata in results["after"]:
            print(f"  {score:.3f}  {product_id:9} {metadata['title']} — {metadata['price']} ({metadata['stock']} in stock)")
        index.close()
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
