"""A 100k-product catalogue: filtered search (Recall@10 vs brute force, latency by selectivity) and a daily batch
(10% upserted, 1% deleted) published while queries run — one run, every timing side by side.

    python benchmarks/catalogue_updates.py --products 100000 --out bench-out/catalogue --json bench-out/catalogue.json

Products are generated (seeded): 20 outdoor categories, 50 brands, titles and descriptions from templates
(materials, features, audiences), log-normal prices per category, 15% out of stock. Vectors: the bundled encoder
(``--model``) embeds the products of a real sample (``--real``, default 2,000); the others get vectors drawn from a
tied Gaussian mixture fitted to that sample (``scale.py``'s, as its ``--like`` does), so they share the real
embeddings' spectrum and clusters; queries are real encoder vectors of generated shopper queries. The index is
what ``DocumentIndex`` builds by default (``index_spec="auto"``: IVF with SQ8 codes at this size, default nprobe),
with ``filter_fields`` on price, stock, brand and category, one chunk per product and no contextual header (a
product's text already starts with its title), so each product's vector is the one embedded or drawn for it. The
batch's upserts/s is measured with drawn vectors for all but the real sample's products; the real encoder's own
rate on this machine (documents/s over the real sample) is reported beside it, with the batch time it implies.

1. Filtered search. Per query, back to back: no filter, and filters passing ~50% (a price ceiling), ~5% (a
   category) and ~0.1% (a category and a brand) of the products — a different filter for each query, so caches
   only help as much as a real mix lets them. Recall@10 of the dense side against brute force (exact inner
   product of the original float vectors over every product the filter passes, decided by ``Filter.matches``);
   p50/p99 of the search (query vector given) in dense and hybrid mode.
2. Daily batch. A separate process (as ``deepseek-rag add --upsert`` from cron would be) upserts 10% of the
   products (new prices and stock for all of them, a new description — so a new vector — for a third) and
   deletes 1%, then publishes; this process keeps querying an ``IndexHandle`` that follows new versions. Reports
   upserts/s, the time until the version is published and until the readers serve it, and query p50/p99 before,
   during and after the batch (hybrid, the filter mix of part 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import TiedGaussianMixture  # noqa: E402

from deepseek_rag import ChunkingConfig, Document, DocumentIndex, DualEncoder, Filter, IndexSettings  # noqa: E402

CATEGORIES = {  # name: (nouns, typical price)
    "hiking boots": (["hiking boots", "trail boots", "backpacking boots"], 140),
    "trail running shoes": (["trail running shoes", "trail runners"], 120),
    "rain jackets": (["rain jacket", "waterproof shell", "rain shell"], 150),
    "down jackets": (["down jacket", "puffer jacket", "down parka"], 220),
    "fleece": (["fleece jacket", "fleece pullover", "grid fleece"], 80),
    "backpacks": (["backpack", "trekking pack", "hiking pack"], 160),
    "daypacks": (["daypack", "summit pack"], 70),
    "tents": (["backpacking tent", "camping tent", "ultralight tent"], 320),
    "sleeping bags": (["sleeping bag", "down sleeping bag", "quilt"], 250),
    "sleeping pads": (["sleeping pad", "inflatable mat", "foam pad"], 90),
    "trekking poles": (["trekking poles", "hiking poles"], 85),
    "headlamps": (["headlamp", "head torch"], 45),
    "water bottles": (["water bottle", "insulated bottle", "hydration bladder"], 30),
    "camp stoves": (["camp stove", "canister stove", "cook system"], 95),
    "base layers": (["base layer top", "thermal leggings", "base layer"], 60),
    "hiking socks": (["hiking socks", "trail socks"], 20),
    "gloves": (["gloves", "mittens", "liner gloves"], 40),
    "sunglasses": (["sunglasses", "glacier glasses"], 110),
    "climbing harnesses": (["climbing harness", "alpine harness"], 75),
    "kayak paddles": (["kayak paddle", "touring paddle"], 180),
}
ADJECTIVES = ["waterproof", "lightweight", "ultralight", "insulated", "breathable", "durable", "packable", "windproof",
              "quick-drying", "rugged", "compact", "warm", "ventilated", "padded", "reflective"]
MATERIALS = ["recycled nylon", "merino wool", "full-grain leather", "ripstop polyester", "Gore-Tex", "aluminium",
             "carbon fibre", "700-fill down", "synthetic insulation", "stainless steel", "silicone", "suede"]
FEATURES = ["taped seams", "a two-way zip", "a grippy Vibram sole", "adjustable straps", "a roll-top closure",
            "a removable hood", "reinforced toe caps", "a hip belt with pockets", "a lifetime warranty",
            "a storm flap", "a stuff sack", "reflective trim", "a magnetic clip", "an ergonomic cork grip"]
USES = ["long days on rocky trails", "wet spring hikes", "alpine scrambles", "weekend camping trips",
        "winter walks in the city", "thru-hikes", "fast and light summits", "family camping", "multi-day treks"]
AUDIENCES = ["men's", "women's", "kids'", "unisex"]
SYLLABLES = ["al", "pen", "tra", "il", "north", "peak", "ridge", "line", "sum", "mit", "ter", "ra", "lo", "ka", "vex",
             "orr", "dal", "sky", "bor", "ea"]


def brands(n: int = 50) -> list[str]:
    rng = np.random.default_rng(7)
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(SYLLABLES, rng.integers(2, 4))).capitalize()
        if name not in names:
            names.append(name)
    return names


def generate_products(n: int, seed: int = 0) -> list[dict]:
    """``n`` products with real-looking titles and descriptions (seeded)."""
    rng = np.random.default_rng(seed)
    brand_names = brands()
    categories = list(CATEGORIES)
    products = []
    for i in range(n):
        category = categories[i % len(categories)]  # each category 5% of the catalogue
        brand = brand_names[int(rng.integers(len(brand_names)))]
        nouns, typical = CATEGORIES[category]
        adjectives = rng.choice(ADJECTIVES, 2, replace=False)
        products.append({
            "id": f"sku-{i:06d}", "category": category, "brand": brand,
            "title": f"{brand} {rng.choice(['Pro', 'Lite', 'Trek', 'Alpine', 'Trail', 'Storm', 'Ridge'])} "
                     f"{int(rng.integers(1, 60))} {adjectives[0]} {rng.choice(nouns)} ({rng.choice(AUDIENCES)})",
            "description": describe(rng, adjectives, nouns),
            "price": round(float(typical * rng.lognormal(0, 0.45)), 2),
            "stock": 0 if rng.random() < 0.15 else int(rng.poisson(25)),
        })
    return products


def describe(rng: np.random.Generator, adjectives, nouns) -> str:
    return (f"A {adjectives[1]} {rng.choice(nouns)} made of {rng.choice(MATERIALS)} with {rng.choice(FEATURES)} and "
            f"{rng.choice(FEATURES)}. It is built for {rng.choice(USES)}, and the fit works for {rng.choice(USES)} too.")


SETTINGS = IndexSettings(filter_fields=["price", "stock", "brand", "category"], contextual_headers=False,
                         chunking=ChunkingConfig(mode="none"))


def product_document(product: dict) -> Document:
    text = f"{product['title']}. {product['description']}"
    return Document(product["id"], text, {k: v for k, v in product.items() if k not in ("id", "description")})


def shopper_queries(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        nouns, _ = CATEGORIES[rng.choice(list(CATEGORIES))]
        queries.append(f"{rng.choice(ADJECTIVES)} {rng.choice(nouns)} for {rng.choice(USES)}")
    return queries


class CatalogueEncoder:
    """The real encoder for texts in ``real`` (and every query); vectors drawn from ``mixture`` for other texts."""

    def __init__(self, encoder: DualEncoder, mixture: TiedGaussianMixture, real: set[str]) -> None:
        self._encoder, self._mixture, self._real = encoder, mixture, real

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode_documents(self, texts, progress=None, **options) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self._encoder.dim), dtype=np.float32)
        real = [i for i, t in enumerate(texts) if t in self._real]
        drawn = [i for i, t in enumerate(texts) if t not in self._real]
        if real:
            out[real] = self._encoder.encode_documents([texts[i] for i in real], progress=False)
        if drawn:
            seed = zlib.crc32("\n".join(texts[i] for i in drawn[:50]).encode()) + len(drawn)
            out[drawn] = self._mixture.sample(len(drawn), seed=seed)
        return out


def save_mixture(mixture: TiedGaussianMixture, path: Path) -> None:
    np.savez(path, means=mixture.means, weights=mixture.weights, factor=mixture.factor)


def load_mixture(path: Path) -> TiedGaussianMixture:
    data = np.load(path)
    mixture = TiedGaussianMixture.__new__(TiedGaussianMixture)
    mixture.means, mixture.weights, mixture.factor = data["means"], data["weights"], data["factor"]
    return mixture


# ------------------------------------------------------------------------------------------------ filters
def filters_for(i: int, products: list[dict], median_price: float, brand_names: list[str]) -> dict[str, dict]:
    """The query's filters at each selectivity; a different one per query."""
    categories = list(CATEGORIES)
    category = categories[i % len(categories)]
    return {
        "50%": {"price": {"$lte": round(median_price * (0.9 + 0.2 * ((i * 7) % 11) / 10), 2)}},
        "5%": {"category": category},
        "0.1%": {"category": category, "brand": brand_names[(i * 13) % len(brand_names)]},
    }


def passing_mask(spec: dict | None, columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Which products pass one of ``filters_for``'s filters (checked against ``Filter.matches``)."""
    mask = np.ones(n, bool)
    for key, condition in (spec or {}).items():
        if isinstance(condition, dict):
            mask &= columns[key] <= condition["$lte"]
        else:
            mask &= columns[key] == condition
    return mask


def brute_force(query: np.ndarray, vectors: np.ndarray, passing: np.ndarray, chunk_ids: np.ndarray, k: int = 10) -> set:
    scores = vectors[passing] @ query
    top = np.argsort(-scores)[:k]
    return set(chunk_ids[passing][top].tolist())


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "queries": len(values)}


def filtered_search(index: DocumentIndex, products: list[dict], vectors: np.ndarray, queries: list[str],
                    query_vectors: np.ndarray, nprobe: int | None = None) -> dict:
    """Recall@10 vs brute force and latency, per selectivity, each query's variants timed back to back."""
    snapshot = index.snapshot()
    chunk_of = {c.doc_id: c.id for batch in snapshot.iter_chunks() for c in batch}
    chunk_ids = np.asarray([chunk_of[p["id"]] for p in products], dtype=np.int64)
    median_price = float(np.median([p["price"] for p in products]))
    brand_names = brands()
    retriever = index.as_retriever(nprobe=nprobe)
    levels = ["none", "50%", "5%", "0.1%"]
    recall = {level: [] for level in levels}
    share = {level: [] for level in levels}
    timings = {f"{mode} {level}": [] for mode in ("dense", "hybrid") for level in levels}
    columns = {key: np.asarray([p[key] for p in products]) for key in ("price", "category", "brand")}
    for i, (text, vector) in enumerate(zip(queries, query_vectors)):
        specs = {"none": None, **filters_for(i, products, median_price, brand_names)}
        for level, spec in specs.items():
            passing = passing_mask(spec, columns, len(products))
            if i < 4 and spec is not None:  # the numpy masks are the reference semantics (Filter.matches)
                parsed = Filter.parse(spec)
                assert passing.tolist() == [parsed.matches(p, p["id"]) for p in products], spec
            share[level].append(passing.mean())
            started = time.perf_counter()
            _, found = index.search_vectors(vector[None], 10, filters=spec, nprobe=nprobe)
            timings[f"dense {level}"].append((time.perf_counter() - started) * 1000)
            truth = brute_force(vector, vectors, passing, chunk_ids)
            if truth:
                recall[level].append(len(truth & set(found[0][found[0] >= 0].tolist())) / len(truth))
            started = time.perf_counter()
            retriever.search_by_vectors(vector[None], 10, queries=[text], filters=spec)
            timings[f"hybrid {level}"].append((time.perf_counter() - started) * 1000)
    return {
        "recall@10": {level: round(float(np.mean(v)), 4) for level, v in recall.items()},
        "selectivity": {level: round(float(np.mean(v)), 5) for level, v in share.items()},
        "latency": {name: percentiles(v) for name, v in timings.items()},
    }


# ------------------------------------------------------------------------------------------------ the batch
def batch_changes(products: list[dict], seed: int = 11) -> tuple[list[dict], list[str]]:
    """10% of the products changed (price and stock; a third also a new description), 1% delisted."""
    rng = np.random.default_rng(seed)
    n = len(products)
    chosen = rng.choice(n, n // 10 + n // 100, replace=False)
    changed, delisted = [], []
    for position, index in enumerate(chosen):
        product = dict(products[int(index)])
        if position < n // 100:
            delisted.append(product["id"])
            continue
        product["price"] = round(product["price"] * float(rng.uniform(0.8, 1.2)), 2)
        product["stock"] = 0 if rng.random() < 0.15 else int(rng.poisson(25))
        if rng.random() < 1 / 3:
            nouns, _ = CATEGORIES[product["category"]]
            product["description"] = describe(rng, rng.choice(ADJECTIVES, 2, replace=False), nouns)
        changed.append(product)
    return changed, delisted


def run_batch(folder: str, work: str, model: str | None) -> dict:
    """Child process: load the index, upsert the changes, delete the delisted products, publish."""
    started = time.perf_counter()
    changes = json.loads((Path(work) / "changes.json").read_text())
    real = set(json.loads((Path(work) / "real_texts.json").read_text()))
    encoder = CatalogueEncoder(DualEncoder(model=model), load_mixture(Path(work) / "mixture.npz"), real)
    index = DocumentIndex.load(folder, encoder)
    index.lock_for_writing()
    loaded = time.perf_counter()
    index.upsert_documents([product_document(p) for p in changes["changed"]], progress=False)
    upserted = time.perf_counter()
    index.delete_documents(changes["delisted"])
    deleted = time.perf_counter()
    index.save()
    published = time.perf_counter()
    version = index.snapshot().version
    index.close()
    return {"load_s": loaded - started, "upsert_s": upserted - loaded, "delete_s": deleted - upserted,
            "publish_s": published - deleted, "started_to_published_s": published - started, "version": version,
            "upserts": len(changes["changed"]), "deletes": len(changes["delisted"]),
            "upserts_per_s": len(changes["changed"]) / (upserted - loaded)}


def daily_batch(folder: Path, work: Path, products: list[dict], queries: list[str], query_vectors: np.ndarray,
                model: str | None, encoder, idle_queries: int, nprobe: int | None = None, batch_nice: int = 0) -> dict:
    from deepseek_rag import IndexHandle

    changed, delisted = batch_changes(products)
    (work / "changes.json").write_text(json.dumps({"changed": changed, "delisted": delisted}))
    handle = IndexHandle(folder, encoder, watch=0.05)
    retriever = handle.as_retriever(nprobe=nprobe)
    median_price = float(np.median([p["price"] for p in products]))
    brand_names = brands()
    counter = [0]

    def one_query() -> float:
        i = counter[0] % len(queries)
        counter[0] += 1
        spec = [None, *filters_for(i, products, median_price, brand_names).values()][i % 4]
        started = time.perf_counter()
        retriever.search_by_vectors(query_vectors[i : i + 1], 10, queries=[queries[i]], filters=spec)
        return (time.perf_counter() - started) * 1000

    for _ in range(len(queries)):  # warm-up, untimed: the first pass reads pages and code the rest find ready
        one_query()
    before = [one_query() for _ in range(idle_queries)]
    first_version = handle.version
    child = subprocess.Popen([*(["nice", "-n", str(batch_nice)] if batch_nice else []),
                              sys.executable, __file__, "--batch", str(folder), str(work), model or ""],
                             stdout=subprocess.PIPE, text=True)
    launched = time.perf_counter()
    during, swapped_at = [], None
    while child.poll() is None:
        during.append(one_query())
        if swapped_at is None and handle.version != first_version:
            swapped_at = time.perf_counter() - launched
    out, _ = child.communicate()
    if child.returncode:
        raise SystemExit(f"the batch process failed (exit {child.returncode})")
    batch = json.loads(out.splitlines()[-1])
    deadline = time.perf_counter() + 30
    while handle.version != batch["version"] and time.perf_counter() < deadline:
        time.sleep(0.01)
    if swapped_at is None:
        swapped_at = time.perf_counter() - launched
    after = [one_query() for _ in range(idle_queries)]
    handle.close()
    return {**{k: round(v, 3) if isinstance(v, float) else v for k, v in batch.items()},
            "launched_to_readers_serving_s": round(swapped_at, 3),
            "queries": {"idle before": percentiles(before), "during batch": percentiles(during),
                        "idle after": percentiles(after)},
            "p99_during_over_idle_before": round(float(np.percentile(during, 99) / np.percentile(before, 99)), 2),
            "p99_during_over_idle_after": round(float(np.percentile(during, 99) / np.percentile(after, 99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2000, help="Products embedded by the real encoder (the rest are drawn).")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--idle-queries", type=int, default=1000, help="Queries timed before and after the batch.")
    parser.add_argument("--model", default=None, help="Encoder folder (default: the bundled MiniLM).")
    parser.add_argument("--index-spec", default="auto", help="FAISS factory string (default: auto, by catalogue size).")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="IVF lists probed (default: the index's, calibrated at build time for --recall-target).")
    parser.add_argument("--batch-nice", type=int, default=10,
                        help="Niceness of the batch process, as cron runs a nightly job (`nice -n 10 deepseek-rag add "
                             "--upsert ...`) on the machine that serves; 0: as urgent as the queries.")
    parser.add_argument("--recall-target", type=float, default=None,
                        help="Recall@10 the build calibrates nprobe / k_factor for (default: the index's, 0.98).")
    parser.add_argument("--out", default=None, help="Where the index is written (default: a temporary folder).")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--batch", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch:
        print(json.dumps(run_batch(args.batch[0], args.batch[1], args.batch[2] or None)))
        return
    results: dict = {"machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start",
                     "products": args.products, "real_vectors": min(args.real, args.products), "nprobe": args.nprobe,
               "recall_target": args.recall_target, "batch_nice": args.batch_nice}
    products = generate_products(args.products)
    documents = [product_document(p) for p in products]
    base = DualEncoder(model=args.model)
    started = time.perf_counter()
    real_ids = np.random.default_rng(5).choice(len(products), min(args.real, len(products)), replace=False)
    real_texts = [documents[int(i)].text for i in real_ids]
    real_vectors = base.encode_documents(real_texts, progress=False)
    results["real_encoder_docs_per_s"] = round(len(real_texts) / (time.perf_counter() - started), 1)
    mixture = TiedGaussianMixture(real_vectors, components=min(64, max(2, len(real_vectors) // 40)))
    encoder = CatalogueEncoder(base, mixture, set(real_texts))
    vectors = encoder.encode_documents([d.text for d in documents])
    vectors[real_ids] = real_vectors
    results["vectors_s"] = round(time.perf_counter() - started, 1)
    print(f"{len(products):,} products; {len(real_ids):,} embedded by {Path(base.model_name).name}, the rest drawn from a "
          f"mixture fitted to them ({results['vectors_s']}s)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = Path(args.out) if args.out else work / "catalogue.idx"
        lookup = {d.text: v for d, v in zip(documents, vectors)}
        prebuilt = CatalogueEncoder(base, mixture, set())

        def known_vectors(texts, progress=None, **_):
            missing = [t for t in texts if t not in lookup]
            if missing:  # a product's chunk is not its whole text: the encoder's max length cut it
                raise SystemExit(f"{len(missing)} product texts were cut into other chunks, e.g. {missing[0][:80]!r}; "
                                 "use an encoder whose max length holds a product's text")
            return np.stack([lookup[t] for t in texts])

        prebuilt.encode_documents = known_vectors
        started = time.perf_counter()
        settings = dataclasses.replace(SETTINGS, index_spec=args.index_spec)
        if args.recall_target is not None:
            settings = dataclasses.replace(settings, vector_search=dataclasses.replace(
                settings.vector_search, recall_target=args.recall_target))
        index = DocumentIndex.build(documents, prebuilt, settings,
                                    progress=False)
        index.save(folder, overwrite=True)
        results["build_s"] = round(time.perf_counter() - started, 1)
        results["index_spec"] = index.snapshot().spec
        knobs = index.snapshot().template.search_record()
        results["search_knobs"] = {"nprobe": knobs["nprobe"], "k_factor": knobs["k_factor"]}
        print(f"built and saved {folder} ({results['index_spec']}, calibrated {results['search_knobs']}) in "
              f"{results['build_s']}s", flush=True)
        index.close()

        queries = shopper_queries(args.queries)
        query_vectors = base.encode_queries(queries)
        reader = DocumentIndex.load(folder, encoder, writable=False)
        results["filtered"] = filtered_search(reader, products, vectors, queries, query_vectors, args.nprobe)
        reader.close()
        print_filtered(results["filtered"])

        save_mixture(mixture, work / "mixture.npz")
        (work / "real_texts.json").write_text(json.dumps(sorted(set(real_texts))))
        results["batch"] = daily_batch(folder, work, products, queries, query_vectors, args.model, encoder,
                                       args.idle_queries, args.nprobe, args.batch_nice)
        batch = results["batch"]
        batch["encode_all_upserts_really_s"] = round(batch["upserts"] / results["real_encoder_docs_per_s"], 1)
        print_batch(batch, args.batch_nice)
        print(f"  the real encoder embeds {results['real_encoder_docs_per_s']} products/s here: embedding every upsert "
              f"with it would add ~{batch['encode_all_upserts_really_s']}s to the batch", flush=True)
    print(results["machine"])
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))


def print_filtered(found: dict) -> None:
    print("\nfiltered search (dense: Recall@10 vs brute force; p50/p99 ms, query vector given)")
    print(f"  {'filter':8} {'passes':>8} {'R@10':>6} {'dense p50':>10} {'dense p99':>10} {'hybrid p50':>11} {'hybrid p99':>11}")
    for level in ("none", "50%", "5%", "0.1%"):
        dense, hybrid = found["latency"][f"dense {level}"], found["latency"][f"hybrid {level}"]
        print(f"  {level:8} {found['selectivity'][level]:8.2%} {found['recall@10'][level]:6.3f} {dense['p50_ms']:10.2f} "
              f"{dense['p99_ms']:10.2f} {hybrid['p50_ms']:11.2f} {hybrid['p99_ms']:11.2f}")
    for mode in ("dense", "hybrid"):
        ratio = found["latency"][f"{mode} 0.1%"]["p99_ms"] / found["latency"][f"{mode} none"]["p99_ms"]
        print(f"  {mode}: p99 at 0.1% / unfiltered p99 = {ratio:.2f}")


def print_batch(batch: dict, nice: int = 0) -> None:
    print(f"\ndaily batch: {batch['upserts']:,} upserts + {batch['deletes']:,} deletes in a separate process"
          + (f" (nice -n {nice})" if nice else ""))
    print(f"  upsert {batch['upsert_s']:.1f}s ({batch['upserts_per_s']:.0f} upserts/s), delete {batch['delete_s']:.2f}s, "
          f"publish {batch['publish_s']:.1f}s; started → published {batch['started_to_published_s']:.1f}s "
          f"(version {batch['version']}); readers served it {batch['launched_to_readers_serving_s']:.1f}s after launch")
    for phase, row in batch["queries"].items():
        print(f"  queries {phase:12} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  ({row['queries']} queries)")
    print(f"  p99 during the batch / idle before = {batch['p99_during_over_idle_before']}, / idle after = "
          f"{batch['p99_during_over_idle_after']}")


if __name__ == "__main__":
    main()
