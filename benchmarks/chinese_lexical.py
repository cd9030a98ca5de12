"""Chinese lexical ranking on a BEIR folder: every BM25 variant in one table, and lexical-only vs dense+sparse builds.

    python benchmarks/chinese_lexical.py ../shared/datasets/cmd_im_sample --out bench-out/chinese-lexical \\
        --user-dictionary benchmarks/data/medical_terms_zh.txt

One lexical-only index is built (``dense="off"``: chunks and BM25, no vectors); every variant re-analyses its
stored chunks (``DocumentIndex.with_sparse``), so rows differ only in the analysis, the BM25 parameters or the
query expansion. Documents are ranked in sparse mode at document level, as ``deepseek-rag eval --mode sparse``
ranks them. Variants are chosen on the dev split and reported on dev and test: the Chinese analysers (character
unigrams + bigrams, jieba search and precise modes, both together), BM25 k1/b per analyser, a jieba user
dictionary, RM3 pseudo-relevance feedback (the query's terms, normalised, interpolated with the most likely
terms of the top feedback chunks, as Anserini's RM3 does), and, when the folder has ``qrels/train.tsv``,
query-term weights learned from the training pairs (``zh_term_weights.py``: term recall, and a fitted
log-linear weight per term). The build timing builds the same corpus twice in one
run — lexical-only, then dense + sparse with the bundled encoder — and saves each. Prints the table and writes
``chinese_lexical.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

from deepseek_rag import DocumentIndex, DualEncoder, SparseConfig
from deepseek_rag.evaluation import load_beir_split, score_run
from deepseek_rag.ingest.loaders import load_beir_corpus
from deepseek_rag.ingest.preparation import with_header
from deepseek_rag.sparse.query_model import fit_query_model
from deepseek_rag.sparse.term_weights import TermWeights, fitted_term_weights, term_recall_weights

DEPTH = 100  # documents ranked per query, as `deepseek-rag eval` does
SPLITS = ("dev", "test")


def build_times(data: str, out: Path, encoder: DualEncoder) -> dict:
    """Seconds to build and save a lexical-only index and a dense + sparse one of the same corpus, one after the other."""
    documents = load_beir_corpus(data)
    rows, seconds_of = {}, []
    for label, dense in (("lexical-only (--dense off)", "off"), ("dense + sparse (default)", "on")):
        folder = out / f"build-{dense}"
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        index = DocumentIndex.build(documents, encoder, dense=dense, progress=False)
        index.save(folder)
        seconds = time.perf_counter() - started
        seconds_of.append(seconds)
        rows[label] = {"seconds": round(seconds, 1), "documents": len(index), "chunks": index.store.counts()[1],
                       "bytes_on_disk": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())}
        index.close()
        print(f"  built {label}: {seconds:.1f}s", flush=True)
    lexical, dense = seconds_of  # unrounded: a tiny corpus builds lexically in well under 0.05 s
    return {"rows": rows, "dense_over_lexical": round(dense / max(lexical, 1e-9), 1)}


def rankings(index: DocumentIndex, texts: list[str]) -> list[list[tuple[str, float]]]:
    docs = index.as_retriever(mode="sparse").retrieve_documents_batch(texts, DEPTH)
    return [[(d.doc_id, d.score) for d in hits] for hits in docs]


def weighted_rankings(index: DocumentIndex, texts: list[str], weights: TermWeights) -> list[list[tuple[str, float]]]:
    """BM25 with each query term's contribution multiplied by its learned weight; documents by their best chunk."""
    snapshot = index.snapshot()
    queries = [weights.apply(snapshot.sparse.query_weights(text)) for text in texts]
    return [best_chunk_per_document(snapshot, scores, ids) for scores, ids in
            zip(*snapshot.search_sparse(queries, DEPTH * 5))]


def best_chunk_per_document(snapshot, scores, ids) -> list[tuple[str, float]]:
    chunks = snapshot.get_chunks([int(i) for i in ids if i >= 0])
    best: dict[str, float] = {}
    for score, chunk_id in zip(scores, ids):
        if chunk_id >= 0 and int(chunk_id) in chunks:
            best.setdefault(chunks[int(chunk_id)].doc_id, float(score))
    return list(best.items())[:DEPTH]


def training_pairs(data: str, index: DocumentIndex) -> tuple[list[tuple[list[str], int]], list[list[str]]] | None:
    """(question terms, relevant document position) for every qrels/train.tsv pair, and every document's terms,
    analysed as ``index`` analyses queries and chunks (title in front); None without a train split."""
    if not (Path(data) / "qrels" / "train.tsv").is_file():
        return None
    train = load_beir_split(data, "train")
    sparse = index.snapshot().sparse
    documents = load_beir_corpus(data)
    position = {d.id: i for i, d in enumerate(documents)}
    headers = index.settings.sparse.headers
    terms = [sparse.analyze_query(with_header(d.text, d.metadata.get("title"), None, headers)) for d in documents]
    pairs = [(sparse.analyze_query(text), position[doc]) for qid, text in train.queries.items()
             for doc, grade in train.qrels[qid].items() if grade > 0 and doc in position]
    return pairs, terms


def rm3_rankings(index: DocumentIndex, texts: list[str], feedback_docs: int, feedback_terms: int,
                 original_weight: float) -> list[list[tuple[str, float]]]:
    """RM3: BM25 with the query's normalised term weights interpolated with the relevance model of the top
    ``feedback_docs`` chunks (term frequency / chunk length, weighted by the chunk's score), pruned to
    ``feedback_terms`` terms; documents scored by their best chunk, as the retriever does."""
    snapshot = index.snapshot()
    sparse = snapshot.sparse
    out = []
    for text in texts:
        query = sparse.query_weights(text)
        scores, ids = snapshot.search_sparse([query], feedback_docs)
        chunks = snapshot.get_chunks([int(i) for i in ids[0] if i >= 0])
        relevance: dict[str, float] = defaultdict(float)
        for score, chunk_id in zip(scores[0], ids[0]):
            if chunk_id < 0:
                continue
            terms = sparse.analyze_query(index.sparse_text(chunks[int(chunk_id)], chunks[int(chunk_id)].metadata.get("title")))
            for term in terms:
                relevance[term] += float(score) / len(terms)
        top = sorted(relevance.items(), key=lambda item: -item[1])[:feedback_terms]
        expanded = {term: original_weight * w / sum(query.values()) for term, w in query.items()}
        total = sum(w for _, w in top) or 1.0
        for term, w in top:
            expanded[term] = expanded.get(term, 0.0) + (1 - original_weight) * w / total
        scores, ids = snapshot.search_sparse([expanded], DEPTH * 5)
        out.append(best_chunk_per_document(snapshot, scores[0], ids[0]))
    return out


def fused_rankings(first: list[list[tuple[str, float]]], second: list[list[tuple[str, float]]],
                   k: int = 60) -> list[list[tuple[str, float]]]:
    """Reciprocal rank fusion of two rankings of each query, equal weights: ``sum 1 / (k + rank)``."""
    out = []
    for one, other in zip(first, second):
        fused: dict[str, float] = defaultdict(float)
        for ranking in (one, other):
            for rank, (doc, _) in enumerate(ranking, start=1):
                fused[doc] += 1.0 / (k + rank)
        out.append(sorted(fused.items(), key=lambda item: -item[1])[:DEPTH])
    return out


def learned_variants(measure, base: DocumentIndex, data: str, user_dictionary: str | None, weights: TermWeights,
                     k1: float, b: float, dev: tuple[list[str], list[str], dict]) -> None:
    """Rows around the fitted weights: k1/b chosen again under them, rank fusion with plain BM25, defaults for
    terms no training question held chosen on dev, and the fit redone with the user dictionary."""
    weighted = lambda index, texts, w=weights: weighted_rankings(index, texts, w)  # noqa: E731
    for k1_ in (0.6, 0.9, 1.2, 1.5):
        for b_ in (0.5, 0.75, 0.9):
            if (k1_, b_) != (k1, b):
                measure(f"chars+search, k1={k1_} b={b_} + fitted term weights (fitted at k1={k1} b={b})",
                        SparseConfig(chinese="chars+search", k1=k1_, b=b_), rank=weighted)
    learned = SparseConfig(chinese="chars+search", k1=k1, b=b)
    for k in (10, 60):
        measure(f"RRF (k {k}): chars+search, k1={k1} b={b} with and without fitted term weights", learned,
                rank=lambda index, texts, k=k: fused_rankings(weighted(index, texts), rankings(index, texts), k))
    qids, texts, qrels = dev
    variant = base.with_sparse(learned)
    factors = {1: 1.0, 2: 1.0, 3: 1.0}

    def with_factors(f: dict[int, float]) -> TermWeights:
        return TermWeights(weights.weights, {n: weights.default_by_length[n] * f[n] for n in (1, 2, 3)})

    best = ndcg(weighted_rankings(variant, texts, with_factors(factors)), qids, qrels)
    for length in (1, 2, 3):  # one length class at a time, on dev only
        for factor in (0.5, 2.0):
            trial = {**factors, length: factor}
            score = ndcg(weighted_rankings(variant, texts, with_factors(trial)), qids, qrels)
            if score > best:
                best, factors = score, trial
    chosen = with_factors(factors)
    measure(f"chars+search, k1={k1} b={b} + fitted term weights, unseen-term defaults x{factors[1]}/{factors[2]}/"
            f"{factors[3]} (1/2/3+ chars, chosen on dev)", learned,
            rank=lambda index, texts: weighted_rankings(index, texts, chosen))
    if user_dictionary:
        config = SparseConfig(chinese="chars+search", user_dictionary=user_dictionary, k1=k1, b=b)
        questions, documents = training_pairs(data, base.with_sparse(config))
        refit = fitted_term_weights(questions, documents, k1=k1, b=b)
        measure(f"chars+search + user dictionary, k1={k1} b={b} + fitted term weights (fitted with it)", config,
                rank=lambda index, texts: weighted_rankings(index, texts, refit))


def query_model_rows(measure, base: DocumentIndex, data: str, learned: SparseConfig, field: str | None, out: Path) -> dict:
    """The library's query model as ``deepseek-rag fit-sparse`` makes it: fitted on the train split under ``learned``'s
    analysis, saved, attached with ``SparseConfig.query_model`` and searched by the retriever (sparse mode, documents
    by their best chunk, as ``deepseek-rag eval --mode sparse`` ranks them). With a field: the term weights alone,
    the field prior alone, and both at prior weights 0.5, 1 and 2."""
    from deepseek_rag.sparse.query_model import QueryModel

    train = load_beir_split(data, "train")
    started = time.perf_counter()
    model = fit_query_model(base.with_sparse(learned), train.queries, train.qrels, field=field)
    seconds = round(time.perf_counter() - started, 1)
    print(f"  fitted the library's query model on {model.fitted_on['pairs']} pairs in {seconds}s", flush=True)
    params = f"k1={learned.k1} b={learned.b}"
    models = {f"chars+search, {params} + query model: term weights (fit_query_model)":
              QueryModel(model.analysis, model.term_weights, None)}
    if model.field_prior is not None:
        prior = model.field_prior
        models[f"chars+search, {params} + query model: field prior on {field!r} only"] = QueryModel(model.analysis, None, prior)
        for weight in (0.5, 1.0, 2.0):
            scaled = type(prior).from_dict({**prior.to_dict(), "weight": weight})
            models[f"chars+search, {params} + query model: term weights + field prior on {field!r} (weight {weight})"] = \
                QueryModel(model.analysis, model.term_weights, scaled)
    for n, (label, variant) in enumerate(models.items()):
        path = out / f"query_model-{n}.json"
        variant.save(path)
        measure(label, SparseConfig(**{**learned.to_dict(), "query_model": str(path)}))
    return {"fit_seconds": seconds, "pairs": model.fitted_on["pairs"], "field": field}


def ndcg(runs: list[list[tuple[str, float]]], qids: list[str], qrels) -> float:
    return round(score_run({q: dict(r) for q, r in zip(qids, runs)}, qrels)["ndcg@10"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder with qrels/dev.tsv and qrels/test.tsv (cmd_im_sample)")
    parser.add_argument("--out", default="bench-out/chinese-lexical", help="Where indexes and results are kept.")
    parser.add_argument("--user-dictionary", default=None, help="jieba user dictionary to measure (one word a line).")
    parser.add_argument("--skip-build-times", action="store_true", help="Leave out the lexical-only vs dense build timing.")
    parser.add_argument("--build-times-only", action="store_true", help="Only the lexical-only vs dense build timing.")
    parser.add_argument("--model", default=None, help="Encoder folder (default: the bundled MiniLM).")
    parser.add_argument("--field", default=None, metavar="KEY",
                        help="Also measure the library's query model with a field prior on this metadata key "
                             "(cmd_im_sample: title, the answer's department).")
    parser.add_argument("--learned-only", action="store_true",
                        help="Only the rows the learned weights need: the plain baseline, the chars+search k1/b grid "
                             "(it picks k1/b) and the learned rows (skips jieba modes, the chars grid, RM3, term recall).")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = DualEncoder(model=args.model)
    results: dict = {"machine": f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"}
    if not args.skip_build_times:
        print("build times (one run, side by side):", flush=True)
        results["build"] = build_times(args.data, out, encoder)
    if args.build_times_only:
        print_build_times(results)
        (out / "chinese_build_times.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
        return

    lexical = out / "lexical-index"
    if not (lexical / "CURRENT").exists():
        DocumentIndex.build(load_beir_corpus(args.data), encoder, dense="off", progress=False).save(lexical, overwrite=True)
    base = DocumentIndex.load(lexical, encoder, writable=False)
    splits = {name: load_beir_split(args.data, name) for name in SPLITS}
    queries = {name: (list(s.queries), [s.queries[q] for q in s.queries]) for name, s in splits.items()}

    def measure(label: str, config: SparseConfig, rank=rankings) -> dict:
        started = time.perf_counter()
        variant = base.with_sparse(config)
        row = {split: ndcg(rank(variant, queries[split][1]), queries[split][0], splits[split].qrels) for split in SPLITS}
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows[label] = row
        print(f"  {label:58} dev {row['dev']:.4f}  test {row['test']:.4f}  ({row['seconds']}s)", flush=True)
        return row

    rows: dict[str, dict] = {}
    print("variants (nDCG@10):", flush=True)
    measure("chars, no zh stop words (plain character baseline)", SparseConfig(chinese_stopwords=False))
    if not args.learned_only:
        measure("chars: unigrams + bigrams, zh stop words (default)", SparseConfig())
        measure("jieba search mode", SparseConfig(chinese="search"))
        measure("jieba precise mode", SparseConfig(chinese="precise"))
    measure("chars+search: bigrams and jieba search words together", SparseConfig(chinese="chars+search"))
    best_params = {}
    defaults = {"chars": "chars: unigrams + bigrams, zh stop words (default)",
                "chars+search": "chars+search: bigrams and jieba search words together"}
    if args.learned_only:
        del defaults["chars"]
    for mode, default_label in defaults.items():
        grid = {(1.5, 0.75): rows[default_label]}
        for k1 in (0.9, 1.2, 2.0):
            for b in (0.5, 0.75, 0.9):
                grid[(k1, b)] = measure(f"{mode}, k1={k1} b={b}", SparseConfig(chinese=mode, k1=k1, b=b))
        best_params[mode] = max(grid, key=lambda key: grid[key]["dev"])
    results["best_bm25_by_dev"] = {mode: {"k1": k1, "b": b} for mode, (k1, b) in best_params.items()}
    k1, b = best_params["chars+search"]
    if args.user_dictionary and not args.learned_only:
        for mode in ("search", "chars+search"):
            measure(f"{mode} + user dictionary ({Path(args.user_dictionary).name})",
                    SparseConfig(chinese=mode, user_dictionary=args.user_dictionary))
        measure(f"chars+search + user dictionary, k1={k1} b={b}",
                SparseConfig(chinese="chars+search", user_dictionary=args.user_dictionary, k1=k1, b=b))
    for docs, terms, weight in () if args.learned_only else ((10, 10, 0.5), (10, 30, 0.9), (3, 10, 0.95), (10, 30, 0.95)):
        for mode in ("chars", "chars+search"):
            measure(f"{mode} + RM3 ({docs} docs, {terms} terms, original weight {weight})", SparseConfig(chinese=mode),
                    rank=lambda index, texts, d=docs, t=terms, w=weight: rm3_rankings(index, texts, d, t, w))
    learned = SparseConfig(chinese="chars+search", k1=k1, b=b)
    pairs = training_pairs(args.data, base.with_sparse(learned))
    if pairs is None:
        print("  (no qrels/train.tsv: no learned query-term weights)", flush=True)
    else:
        questions, documents = pairs
        recall_pairs = [(q, documents[d]) for q, d in questions]
        for alpha, gamma in () if args.learned_only else ((10, 0.5), (30, 0.5), (30, 1.0)):
            weights = term_recall_weights(recall_pairs, alpha=alpha, gamma=gamma)
            measure(f"chars+search, k1={k1} b={b} + term recall weights (alpha {alpha}, gamma {gamma})", learned,
                    rank=lambda index, texts, w=weights: weighted_rankings(index, texts, w))
        started = time.perf_counter()
        weights = fitted_term_weights(questions, documents, k1=k1, b=b)
        print(f"  fitted term weights on {len(questions)} training pairs in {time.perf_counter() - started:.0f}s", flush=True)
        measure(f"chars+search, k1={k1} b={b} + fitted term weights", learned,
                rank=lambda index, texts, w=weights: weighted_rankings(index, texts, w))
        learned_variants(measure, base, args.data, args.user_dictionary, weights, k1, b,
                         (*queries["dev"], splits["dev"].qrels))
        results["query_model"] = query_model_rows(measure, base, args.data, learned, args.field, out)
        results["fitted_term_weights"] = {"lowest": sorted(weights.weights.items(), key=lambda kv: kv[1])[:20],
                                          "highest": sorted(weights.weights.items(), key=lambda kv: -kv[1])[:20],
                                          "unseen_by_length": weights.default_by_length}
    results["variants"] = rows
    baseline = rows["chars, no zh stop words (plain character baseline)"]["test"]
    chosen = max(rows, key=lambda label: rows[label]["dev"])
    results["best_by_dev"] = {"variant": chosen, **rows[chosen], "test_over_plain_baseline": round(rows[chosen]["test"] / baseline, 3)}

    (out / "chinese_lexical.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\n{'variant':72} {'dev':>7} {'test':>7} {'test/plain':>10}")
    for label, row in rows.items():
        print(f"{label:72} {row['dev']:7.4f} {row['test']:7.4f} {row['test'] / baseline:10.3f}")
    print(f"\nbest on dev: {chosen} — test nDCG@10 {rows[chosen]['test']:.4f} ({rows[chosen]['test'] / baseline:.3f}x "
          f"the plain character baseline {baseline:.4f})")
    print_build_times(results)
    print(f"{results['machine']}; wrote {out / 'chinese_lexical.json'}")


def print_build_times(results: dict) -> None:
    if "build" in results:
        for label, row in results["build"]["rows"].items():
            print(f"build {label:30} {row['seconds']:8.1f}s  {row['chunks']} chunks  {row['bytes_on_disk'] / 1e6:.1f} MB")
        print(f"dense + sparse / lexical-only build time: {results['build']['dense_over_lexical']}x")


if __name__ == "__main__":
    main()
