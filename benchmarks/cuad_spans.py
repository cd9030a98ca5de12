"""CUAD span-level retrieval (LegalBench-RAG style): ours vs LlamaIndex's own pipelines, one run.

    python benchmarks/cuad_spans.py ../shared/datasets/cuad --limit-docs 60 --json bench-out/cuad.json

A returned chunk *hits* when it overlaps an answer's character span in the right contract. For each
pipeline and k in (1, 4, 8, 16): span Recall@k (share of queries with a hit in the top k), precision@k
(share of returned chunks that hit), characters returned per query, and document-level nDCG@10. Also
LegalBench-RAG's own character-level figures: char_precision@k (share of the returned characters that lie
inside an answer) and char_recall@k (share of the answer characters that some returned chunk covers).
Pipelines, all with the same all-MiniLM-L6-v2:

* ``ours-{hybrid,dense,sparse}``: DocumentIndex defaults (token windows that fit the model, contextual
  headers), Flat index, scored in each retrieval mode from one build; ``ours-hybrid-focus``: the same index
  with ``focus_documents=1`` (contracts ranked first, then the chunks inside the best one);
* ``ours-no-headers-{...}``: the same without contextual headers (``--variants`` to choose);
* ``llamaindex-default``: ``VectorStoreIndex.from_documents`` + ``HuggingFaceEmbedding`` (SentenceSplitter 1024/200);
* ``llamaindex-256``: the same with ``SentenceSplitter(chunk_size=256, chunk_overlap=32)``.

``--limit-docs`` keeps the first N contracts that have queries (and those queries), so a 2-core CPU
finishes in minutes; say so when quoting figures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from deepseek_rag.evaluation import ndcg_at_k

KS = (1, 4, 8, 16)


def load_cuad(folder: Path, limit_docs: int | None):
    corpus = {r["_id"]: r for r in map(json.loads, open(folder / "corpus.jsonl", encoding="utf-8"))}
    queries = {r["_id"]: r["text"] for r in map(json.loads, open(folder / "queries.jsonl", encoding="utf-8"))}
    spans: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for row in map(json.loads, open(folder / "qrels" / "test_spans.jsonl", encoding="utf-8")):
        spans[row["query-id"]].append((row["corpus-id"], row["start"], row["end"]))
    docs_in_order = list(dict.fromkeys(doc for q in spans for doc, _, _ in spans[q]))
    keep = set(docs_in_order[:limit_docs] if limit_docs else docs_in_order)
    spans = {q: s for q, s in spans.items() if all(doc in keep for doc, _, _ in s)}
    return {d: corpus[d] for d in corpus if d in keep}, {q: queries[q] for q in spans}, spans


def score(results: dict[str, list[tuple[str, int, int]]], spans, chunk_spans: dict[str, list[tuple[int, int]]]) -> dict[str, float]:
    """results: query → ranked (doc_id, start, end) chunks; chunk_spans: every chunk of each contract.

    ``ceiling_precision@k`` is the best precision@k any ranking of these chunks could reach: a query whose
    answers touch 2 chunks can fill at most 2 of its top 8 with hits.
    """
    metrics: dict[str, float] = defaultdict(float)
    for qid, ranked in results.items():
        answers = spans[qid]
        answer_doc = answers[0][0]
        answer_chars = _merge([(s, e) for d, s, e in answers if d == answer_doc])
        answer_chunks = sum(
            any(s < ae and e > as_ for _, as_, ae in answers)
            for s, e in chunk_spans[answer_doc]
        )
        hits = [any(d == ad and s < ae and e > as_ for ad, as_, ae in answers) for d, s, e in ranked]
        for k in KS:
            metrics[f"recall@{k}"] += float(any(hits[:k]))
            metrics[f"precision@{k}"] += sum(hits[:k]) / k
            metrics[f"chars@{k}"] += sum(e - s for _, s, e in ranked[:k])
            metrics[f"ceiling_precision@{k}"] += min(answer_chunks, k) / k
            returned = [(s, e) for d, s, e in ranked[:k] if d == answer_doc]
            relevant = sum(_overlap((s, e), answer_chars) for s, e in returned)
            metrics[f"char_precision@{k}"] += relevant / max(1, sum(e - s for _, s, e in ranked[:k]))
            covered = sum(_overlap(span, answer_chars) for span in _merge(returned))
            metrics[f"char_recall@{k}"] += covered / max(1, sum(e - s for s, e in answer_chars))
        doc_order = list(dict.fromkeys(d for d, _, _ in ranked))
        metrics["doc_ndcg@10"] += ndcg_at_k(doc_order, {answer_doc: 1}, 10)
    return {name: value / len(results) for name, value in metrics.items()}


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of half-open character intervals."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _overlap(span: tuple[int, int], merged: list[tuple[int, int]]) -> int:
    """Characters of ``span`` inside the (merged, disjoint) intervals."""
    return sum(max(0, min(span[1], e) - max(span[0], s)) for s, e in merged)


def run_ours(corpus, queries, headers: bool, depth: int, modes: tuple[str, ...] = ("hybrid",), keep: Path | None = None):
    """One build, scored in each retrieval mode: {mode: (results, chunk_spans, stats)}.

    With ``keep``, the index is saved there (with its build time) and reused by the next run with the same
    contracts, so a long build is paid once while retrieval settings are compared.
    """
    from deepseek_rag import Document, DocumentIndex

    timing = keep / "build_seconds.json" if keep else None
    if timing is not None and timing.is_file() and json.loads(timing.read_text())["contracts"] == sorted(corpus):
        index = DocumentIndex.load(keep)
        build = json.loads(timing.read_text())["build_s"]
    else:
        docs = [Document(d, r["text"], {"title": r["title"]}) for d, r in corpus.items()]
        started = time.perf_counter()
        index = DocumentIndex.build(docs, index_spec="Flat", contextual_headers=headers)
        build = time.perf_counter() - started
        if keep is not None:
            index.save(keep, overwrite=True)
            timing.write_text(json.dumps({"contracts": sorted(corpus), "build_s": build}))
    chunks = [c for batch in index.store.iter_chunks() for c in batch]
    tokens = [len(index.encoder.tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    chunk_spans = defaultdict(list)
    for c in chunks:
        chunk_spans[c.doc_id].append((c.start, c.end))
    qids = list(queries)
    out = {}
    for mode in modes:
        # "<mode>-focus": rank contracts first, then chunks inside the best one (Retriever focus_documents=1)
        base, focus = mode.removesuffix("-focus"), mode.endswith("-focus")
        retriever = index.as_retriever(mode=base, focus_documents=1 if focus else 0)
        started = time.perf_counter()
        ranked = retriever.retrieve_batch([queries[q] for q in qids], depth)
        search = time.perf_counter() - started
        results = {q: [(h.doc_id, h.start, h.end) for h in hits] for q, hits in zip(qids, ranked)}
        out[mode] = (results, chunk_spans, {"chunks": len(tokens), "max_chunk_tokens": max(tokens), "build_s": build, "search_s": search})
    return out


def run_llamaindex(corpus, queries, chunk_size: int | None, depth: int):
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from deepseek_rag.encoding.dual_encoder import default_model_path

    embed = HuggingFaceEmbedding(model_name=default_model_path(), device="cpu")
    docs = [Document(text=r["text"], id_=d, metadata={"title": r["title"]}) for d, r in corpus.items()]
    splitter = SentenceSplitter() if chunk_size is None else SentenceSplitter(chunk_size=chunk_size, chunk_overlap=32)
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs, embed_model=embed, transformations=[splitter])
    build = time.perf_counter() - started
    retriever = index.as_retriever(similarity_top_k=depth)
    results = {}
    started = time.perf_counter()
    for qid, text in queries.items():
        nodes = retriever.retrieve(text)
        results[qid] = [(n.node.ref_doc_id, n.node.start_char_idx or 0, n.node.end_char_idx or 0) for n in nodes]
    search = time.perf_counter() - started
    nodes = list(index.docstore.docs.values())
    chunk_spans = defaultdict(list)
    for n in nodes:
        chunk_spans[n.ref_doc_id].append((n.start_char_idx or 0, n.end_char_idx or 0))
    tokenizer = embed._model.tokenizer
    tokens = [len(tokenizer(n.get_content(metadata_mode="embed"), add_special_tokens=False)["input_ids"]) for n in nodes]
    truncated = float(np.mean([t > 254 for t in tokens]))
    return results, chunk_spans, {"chunks": len(nodes), "max_chunk_tokens": max(tokens), "truncated_share": truncated,
                     "build_s": build, "search_s": search}


def print_table(table: dict[str, dict[str, float]], columns: list[str]) -> None:
    counts = ("chars@8", "chunks", "max_chunk_tokens")
    print("\n" + f"{'pipeline':<22}" + "".join(f"{c:>20}" for c in columns))
    for name, row in table.items():
        print(f"{name:<22}" + "".join(f"{row[c]:>20.0f}" if c in counts else f"{row[c]:>20.3f}" for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="CUAD folder (BEIR layout with qrels/test_spans.jsonl)")
    parser.add_argument("--limit-docs", type=int, default=60, help="Contracts to use (0 = all 510).")
    parser.add_argument("--variants", default="ours,ours-no-headers,llamaindex-default,llamaindex-256")
    parser.add_argument("--keep-index", default=None,
                        help="Folder to save our indexes in (one per variant) and reuse when the contracts match.")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the results here.")
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    corpus, queries, spans = load_cuad(Path(args.data), args.limit_docs or None)
    print(f"CUAD: {len(corpus)} contracts, {len(queries)} queries, {sum(len(r['text']) for r in corpus.values()):,} chars")
    depth = max(KS)
    modes = ("hybrid", "dense", "sparse", "hybrid-focus")
    kept = (lambda name: Path(args.keep_index) / name) if args.keep_index else (lambda name: None)
    runners = {
        "ours": lambda: {f"ours-{m}": r for m, r in run_ours(corpus, queries, True, depth, modes, kept("ours")).items()},
        "ours-no-headers": lambda: {f"ours-no-headers-{m}": r for m, r in
                                    run_ours(corpus, queries, False, depth, modes, kept("ours-no-headers")).items()},
        "llamaindex-default": lambda: {"llamaindex-default": run_llamaindex(corpus, queries, None, depth)},
        "llamaindex-256": lambda: {"llamaindex-256": run_llamaindex(corpus, queries, 256, depth)},
    }
    table = {}
    for variant in args.variants.split(","):
        for name, (results, chunk_spans, stats) in runners[variant]().items():
            table[name] = {**score(results, spans, chunk_spans), **stats}
            print(f"  {name}: done ({stats['chunks']} chunks, build {stats['build_s']:.0f}s)", flush=True)
    columns = [f"recall@{k}" for k in KS] + [f"precision@{k}" for k in (1, 8)] + ["ceiling_precision@8", "chars@8", "doc_ndcg@10", "chunks", "max_chunk_tokens"]
    print_table(table, columns)
    print_table(table, [f"char_{m}@{k}" for m in ("precision", "recall") for k in KS])
    if "llamaindex-default" in table:
        reference = table["llamaindex-default"]
        print(f"\ntruncated llamaindex-default chunks: {reference['truncated_share']:.0%}")
        for name, row in table.items():
            if name.startswith("ours"):
                print(f"  {name}: precision@8 {row['precision@8'] / max(1e-9, reference['precision@8']):.2f}x "
                      f"llamaindex-default's, char_precision@8 "
                      f"{row['char_precision@8'] / max(1e-9, reference['char_precision@8']):.2f}x, "
                      f"{row['chars@8'] / reference['chars@8']:.2f}x its characters")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"contracts": len(corpus), "queries": len(queries), "results": table}, indent=2))


if __name__ == "__main__":
    main()
