"""CUAD span-level retrieval (LegalBench-RAG style): ours vs LlamaIndex's own pipelines, one run.

    python benchmarks/cuad_spans.py ../shared/datasets/cuad --limit-docs 60 --json bench-out/cuad.json
    python benchmarks/cuad_spans.py ../shared/datasets/cuad --split heldout --limit-docs 0   # unseen contracts

A returned chunk *hits* when it overlaps an answer's character span in the right contract. For each
pipeline and k in (1, 4, 8, 16): span Recall@k (share of queries with a hit in the top k), precision@k
(share of returned chunks that hit), characters returned per query, and document-level nDCG@10. Also
LegalBench-RAG's own character-level figures: char_precision@k (share of the returned characters that lie
inside an answer) and char_recall@k (share of the answer characters that some returned chunk covers).
Pipelines, all with the same all-MiniLM-L6-v2:

* ``ours-{hybrid,dense,sparse}``: DocumentIndex defaults (token windows that fit the model, contextual
  headers, the focus rule ``focus_documents="auto"``), Flat index, scored in each retrieval mode from one
  build; ``ours-hybrid-plain``: the same with the rule off (``focus_documents=0``); ``ours-hybrid-focus``:
  always focused (``focus_documents=1``); ``ours-llamaindex-adapter``: the same index through
  ``llama_index.retrievers.deepseek_rag.DeepSeekRAGRetriever`` with its defaults, as a query engine uses it;
* ``ours-small``: precise passages — ``--chunk-tokens`` chunks matched (default 128), each hit returned as a
  window of ``--window-tokens`` (0: the chunk as it is);
* ``ours-no-headers-{...}``: the same without contextual headers (``--variants`` to choose);
* ``llamaindex-default``: ``VectorStoreIndex.from_documents`` + ``HuggingFaceEmbedding`` (SentenceSplitter 1024/200);
* ``llamaindex-256``: the same with ``SentenceSplitter(chunk_size=256, chunk_overlap=32)``.

``--limit-docs`` keeps the first N contracts that have queries (and those queries), so a 2-core CPU
finishes in minutes; say so when quoting figures. ``--split`` applies the split rule first (see
:func:`deepseek_rag.evaluation.held_out`): ``heldout`` keeps the contracts a CUAD fine-tune never trains on, ``train`` the others.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from deepseek_rag.evaluation import held_out, ndcg_at_k

KS = (1, 4, 8, 16)
SPLITS = ("all", "train", "heldout")


def load_cuad(folder: Path, limit_docs: int | None, split: str = "all"):
    corpus = {r["_id"]: r for r in map(json.loads, open(folder / "corpus.jsonl", encoding="utf-8"))}
    queries = {r["_id"]: r["text"] for r in map(json.loads, open(folder / "queries.jsonl", encoding="utf-8"))}
    spans: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for row in map(json.loads, open(folder / "qrels" / "test_spans.jsonl", encoding="utf-8")):
        spans[row["query-id"]].append((row["corpus-id"], row["start"], row["end"]))
    docs_in_order = list(dict.fromkeys(doc for q in spans for doc, _, _ in spans[q]))
    if split != "all":
        docs_in_order = [d for d in docs_in_order if held_out(d) == (split == "heldout")]
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


def run_ours(corpus, queries, headers: bool, depth: int, modes: tuple[str, ...] = ("hybrid",), keep: Path | None = None,
             *, chunk_tokens: int | None = None, window_tokens: int | None = None, adapter: bool = False,
             dtype: str = "auto", encoder_adapter: str | None = None):
    """One build, scored in each retrieval mode: {mode: (results, chunk_spans, stats)}.

    With ``keep``, the index is saved there (with its build time) and reused by the next run with the same
    contracts, so a long build is paid once while retrieval settings are compared. ``chunk_tokens``: chunk
    size (None: the default); ``window_tokens``: return windows of that size around each matched chunk;
    ``adapter``: also score the index through the LlamaIndex adapter's defaults (row ``"llamaindex-adapter"``);
    ``dtype``: the encoder's; ``encoder_adapter``: a fine-tuned adapter folder the encoder loads (a kept index
    is reused only with a query-side one: one that changes document vectors is refused, naming the index).
    """
    from deepseek_rag import Document, DocumentIndex
    from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig

    timing = keep / "build_seconds.json" if keep else None
    recorded = json.loads(timing.read_text()) if timing is not None and timing.is_file() else {}
    if recorded.get("contracts") == sorted(corpus) and recorded.get("dtype", "auto") == dtype:
        overrides = {"dtype": dtype, **({"adapter": encoder_adapter} if encoder_adapter else {})}
        index = DocumentIndex.load(keep, encoder_overrides=overrides, writable=False)
        build = recorded["build_s"]
    else:
        docs = [Document(d, r["text"], {"title": r["title"]}) for d, r in corpus.items()]
        encoder = DualEncoder(EncoderConfig(adapter=encoder_adapter, dtype=dtype))
        started = time.perf_counter()
        chunking = {"chunking": {"max_tokens": chunk_tokens}} if chunk_tokens else {}
        index = DocumentIndex.build(docs, encoder, index_spec="Flat", contextual_headers=headers, **chunking)
        build = time.perf_counter() - started
        if keep is not None:
            index.save(keep, overwrite=True)
            timing.write_text(json.dumps({"contracts": sorted(corpus), "dtype": dtype, "build_s": build}))
    chunks = [c for batch in index.store.iter_chunks() for c in batch]
    tokens = [len(index.encoder.tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    chunk_spans = defaultdict(list)
    for c in chunks:
        chunk_spans[c.doc_id].append((c.start, c.end))
    qids = list(queries)
    out = {}
    stats = {"chunks": len(tokens), "max_chunk_tokens": max(tokens), "build_s": build}
    for mode in modes:
        # "<mode>": the defaults (the focus rule); "<mode>-plain": rule off; "<mode>-focus": always focused
        base, _, variant = mode.partition("-")
        focus = {"": "auto", "plain": 0, "focus": 1}[variant]
        retriever = index.as_retriever(mode=base, focus_documents=focus, window_tokens=window_tokens or None)
        started = time.perf_counter()
        ranked = retriever.retrieve_batch([queries[q] for q in qids], depth)
        search = time.perf_counter() - started
        results = {q: [(h.doc_id, h.start, h.end) for h in hits] for q, hits in zip(qids, ranked)}
        extra = {}
        if focus == "auto":
            reasons = [d.reason or "plain" for d in retriever.focus_decisions([queries[q] for q in qids], depth)]
            extra = {"focused_share": sum(r not in ("plain", "short") for r in reasons) / max(1, len(reasons))}
        out[mode] = (results, chunk_spans, {**stats, "search_s": search, **extra})
    if adapter:
        from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever

        retriever = DeepSeekRAGRetriever(index, similarity_top_k=depth)  # every other setting: the adapter's default
        started = time.perf_counter()
        results = {}
        for qid in qids:
            nodes = retriever.retrieve(queries[qid])
            results[qid] = [(n.node.ref_doc_id, n.node.start_char_idx, n.node.end_char_idx) for n in nodes]
        out["llamaindex-adapter"] = (results, chunk_spans, {**stats, "search_s": time.perf_counter() - started})
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
    parser.add_argument("--limit-docs", type=int, default=60, help="Contracts to use (0 = all 472 with questions).")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="Contracts of the fine-tuning split to use: heldout (never trained on), train, or all.")
    parser.add_argument("--variants", default="ours,ours-no-headers,llamaindex-default,llamaindex-256",
                        help="Comma-separated: ours, ours-no-headers, ours-small, llamaindex-default, llamaindex-256.")
    parser.add_argument("--chunk-tokens", type=int, default=128, help="Chunk size of the ours-small variant.")
    parser.add_argument("--window-tokens", type=int, default=0,
                        help="ours-small: return a window of this many tokens around each matched chunk (0: the chunk).")
    parser.add_argument("--keep-index", default=None,
                        help="Folder to save our indexes in (one per variant) and reuse when the contracts match.")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the results here.")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="Encoder dtype of our pipelines (auto: bf16 where the CPU has it; float32 for comparisons).")
    parser.add_argument("--adapter", default=None,
                        help="ours: also score with this fine-tuned adapter (rows ours-<folder name>-<mode>, beside the "
                             "base rows; the LlamaIndex-adapter row is skipped); with --keep-index a query-side adapter "
                             "reuses the base index, one that changes document vectors gets (and keeps) its own.")
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    corpus, queries, spans = load_cuad(Path(args.data), args.limit_docs or None, args.split)
    print(f"CUAD ({args.split}): {len(corpus)} contracts, {len(queries)} queries, "
          f"{sum(len(r['text']) for r in corpus.values()):,} chars")
    depth = max(KS)
    modes = ("hybrid", "hybrid-plain", "dense", "sparse", "hybrid-focus")
    kept = (lambda name: Path(args.keep_index) / name) if args.keep_index else (lambda name: None)
    tuned = Path(args.adapter).name if args.adapter else None

    def ours() -> dict:
        rows = {f"ours-{m}": r for m, r in run_ours(corpus, queries, True, depth, modes, kept("ours"),
                                                    adapter=not args.adapter, dtype=args.dtype).items()}
        if args.adapter:  # a query-side adapter searches the same kept index, beside the base rows
            from deepseek_rag.errors import EncoderMismatchError

            try:
                adapted = run_ours(corpus, queries, True, depth, modes, kept("ours"), dtype=args.dtype,
                                   encoder_adapter=args.adapter)
            except EncoderMismatchError:  # it changes document vectors: an index of its own (kept once built)
                print(f"  {args.adapter} changes document vectors: indexing with it", flush=True)
                adapted = run_ours(corpus, queries, True, depth, modes, kept(f"ours-{tuned}"), dtype=args.dtype,
                                   encoder_adapter=args.adapter)
            rows.update({f"ours-{tuned}-{m}": r for m, r in adapted.items()})
        return rows

    runners = {
        "ours": ours,
        "ours-small": lambda: {f"ours-small-{m}": r for m, r in run_ours(
            corpus, queries, True, depth, ("hybrid", "hybrid-plain"), kept(f"ours-small-{args.chunk_tokens}"),
            chunk_tokens=args.chunk_tokens, window_tokens=args.window_tokens).items()},
        "ours-no-headers": lambda: {f"ours-no-headers-{m}": r for m, r in
                                    run_ours(corpus, queries, False, depth, modes, kept("ours-no-headers")).items()},
        "llamaindex-default": lambda: {"llamaindex-default": run_llamaindex(corpus, queries, None, depth)},
        "llamaindex-256": lambda: {"llamaindex-256": run_llamaindex(corpus, queries, 256, depth)},
    }
    table = {}
    for variant in args.variants.split(","):
        for name, (results, chunk_spans, stats) in runners[variant]().items():
            table[name] = row = {**score(results, spans, chunk_spans), **stats}
            print(f"  {name}: R@8 {row['recall@8']:.3f} P@8 {row['precision@8']:.3f} char P@8 "
                  f"{row['char_precision@8']:.4f} char R@8 {row['char_recall@8']:.3f} ({stats['chunks']} chunks, "
                  f"build {stats['build_s']:.0f}s, search {stats['search_s']:.0f}s)", flush=True)
            if args.json_out:  # written as rows come in, so a long run that is stopped keeps what it measured
                Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json_out).write_text(json.dumps(
                    {"split": args.split, "contracts": len(corpus), "queries": len(queries), "results": table}, indent=2))
    columns = [f"recall@{k}" for k in KS] + [f"precision@{k}" for k in (1, 8)] + ["ceiling_precision@8", "chars@8", "doc_ndcg@10", "chunks", "max_chunk_tokens"]
    print_table(table, columns)
    print_table(table, [f"char_{m}@{k}" for m in ("precision", "recall") for k in KS])
    if "llamaindex-default" in table:
        reference = table["llamaindex-default"]
        print(f"\ntruncated llamaindex-default chunks: {reference['truncated_share']:.0%}")
        for name, row in table.items():
            if name.startswith(("ours", "llamaindex-adapter")):
                print(f"  {name}: precision@8 {row['precision@8'] / max(1e-9, reference['precision@8']):.2f}x "
                      f"llamaindex-default's, char_precision@8 "
                      f"{row['char_precision@8'] / max(1e-9, reference['char_precision@8']):.2f}x, "
                      f"{row['chars@8'] / reference['chars@8']:.2f}x its characters")


if __name__ == "__main__":
    main()
