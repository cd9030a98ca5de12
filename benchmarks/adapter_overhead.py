"""What the LlamaIndex adapter costs: per-query latency and nDCG@10, core Retriever vs DeepSeekRAGRetriever.

    python benchmarks/adapter_overhead.py ../shared/datasets/scifact --limit-docs 1000 --json

Builds one core index (every judged document of the split first, then others up to ``--limit-docs``; only
queries whose judged documents are all indexed are scored), then runs each query through both paths,
interleaved in a shuffled order per query so warm caches, CPU frequency and a busy machine favour neither: chunk level
(``Retriever.retrieve`` vs ``DeepSeekRAGRetriever.retrieve``) and document level (``retrieve_documents`` vs
``level="document"``). Reports p50/p95/mean latency, the per-query paired difference, nDCG@10 through both,
and whether the two paths return identical rankings. Query encoding alone is timed too, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder
from deepseek_rag.evaluation import BeirSplit, load_beir_split, score_run
from deepseek_rag.ingest.loaders import load_beir_corpus


def select_corpus(data: str, split: BeirSplit, limit: int | None) -> tuple[list, BeirSplit]:
    """Judged documents first, then the rest in corpus order, up to ``limit``; the queries fully covered."""
    documents = load_beir_corpus(data)
    if not limit or limit >= len(documents):
        return documents, split
    by_id = {d.id: d for d in documents}
    chosen: dict[str, object] = {}
    for qid in split.qrels:
        judged = [d for d in split.qrels[qid] if d in by_id]
        if len(chosen) + len([d for d in judged if d not in chosen]) > limit:
            continue
        chosen.update({d: by_id[d] for d in judged})
    for doc in documents:
        if len(chosen) >= limit:
            break
        chosen.setdefault(doc.id, doc)
    kept = {q: j for q, j in split.qrels.items() if all(d in chosen or d not in by_id for d in j)}
    return list(chosen.values()), BeirSplit({q: split.queries[q] for q in kept}, kept)


def percentiles(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(values_ms, 50)),
        "p95_ms": float(np.percentile(values_ms, 95)),
        "mean_ms": float(statistics.fmean(values_ms)),
    }


def timed(call, *args, **kwargs):
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test", help="qrels/<split>.tsv to score.")
    parser.add_argument("--limit-docs", type=int, default=None, help="Index at most this many documents (judged first).")
    parser.add_argument("--top-k", type=int, default=10, help="Chunks / documents returned per query.")
    parser.add_argument("--max-queries", type=int, default=None, help="Score only the first N judged queries.")
    parser.add_argument("--index-spec", default="auto", help="FAISS factory string or auto.")
    parser.add_argument("--model", default=None, help="Encoder model folder (default: bundled all-MiniLM-L6-v2).")
    parser.add_argument("--keep-index", default=None, help="Save the built index here, or reuse it when it exists.")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the encoder; 1 keeps latency sane on a shared, busy CPU.")
    parser.add_argument("--json", dest="as_json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()

    try:
        from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever
    except ImportError as exc:
        raise SystemExit(f"needs the LlamaIndex adapter: pip install -e adapters/llama-index ({exc})") from None

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    split = load_beir_split(args.data, args.split)
    encoder = DualEncoder(model=args.model, dtype="float32")
    build_seconds = None
    if args.keep_index and (Path(args.keep_index) / "manifest.json").exists():
        index = DocumentIndex.load(args.keep_index, encoder)
        indexed = set(index.document_ids())
        kept = {q: j for q, j in split.qrels.items() if all(d in indexed for d in j)}
        split = BeirSplit({q: split.queries[q] for q in kept}, kept)
    else:
        documents, split = select_corpus(args.data, split, args.limit_docs)
        started = time.perf_counter()
        index = DocumentIndex.build(documents, encoder, index_spec=args.index_spec, progress=not args.as_json)
        build_seconds = time.perf_counter() - started
        if args.keep_index:
            index.save(args.keep_index, overwrite=True)
    qids = list(split.queries)[: args.max_queries]
    k = args.top_k
    info = index.info()

    core = index.as_retriever(top_k=k)
    adapter_chunks = DeepSeekRAGRetriever(index, similarity_top_k=k)
    adapter_docs = DeepSeekRAGRetriever(index, similarity_top_k=k, level="document")
    paths = {
        "encode query only": lambda q: encoder.encode_queries([q]),
        "core Retriever.retrieve": lambda q: core.retrieve(q),
        "DeepSeekRAGRetriever.retrieve": lambda q: adapter_chunks.retrieve(q),
        "core Retriever.retrieve_documents": lambda q: core.retrieve_documents(q),
        "DeepSeekRAGRetriever.retrieve (document)": lambda q: adapter_docs.retrieve(q),
    }
    for qid in qids[:5]:  # warm up every path
        for call in paths.values():
            call(split.queries[qid])

    # What the adapter adds on top of a core search: turning its hits into nodes (ids, relationships, metadata).
    conversions = {
        "adapter node building only (chunk)": ("core Retriever.retrieve", adapter_chunks._chunk_node),
        "adapter node building only (document)": ("core Retriever.retrieve_documents", adapter_docs._document_node),
    }
    times: dict[str, list[float]] = {name: [] for name in [*paths, *conversions]}
    runs: dict[str, dict[str, dict[str, float]]] = {"core": {}, "adapter": {}}
    same_chunks = same_docs = 0
    names, shuffler = list(paths), random.Random(0)
    for qid in qids:
        query = split.queries[qid]
        results = {}
        shuffler.shuffle(names)  # a fresh order for every query: no path always runs first, or after another
        for name in names:
            results[name], ms = timed(paths[name], query)
            times[name].append(ms)
        for name, (source, convert) in conversions.items():
            times[name].append(timed(lambda hits: [convert(h) for h in hits], results[source])[1])
        chunk_ids = [f"{h.doc_id}::{h.ordinal}" for h in results["core Retriever.retrieve"]]
        same_chunks += chunk_ids == [n.node.node_id for n in results["DeepSeekRAGRetriever.retrieve"]]
        core_docs = results["core Retriever.retrieve_documents"]
        adapter_docs_found = results["DeepSeekRAGRetriever.retrieve (document)"]
        same_docs += [d.doc_id for d in core_docs] == [n.node.node_id for n in adapter_docs_found]
        runs["core"][qid] = {d.doc_id: d.score for d in core_docs if d.doc_id != qid}
        runs["adapter"][qid] = {n.node.node_id: float(n.score) for n in adapter_docs_found if n.node.node_id != qid}

    qrels = {q: split.qrels[q] for q in qids}
    metrics = {side: score_run(run, qrels, recall_k=(10,)) for side, run in runs.items()}
    rows = []
    for name, values in times.items():
        row = {"path": name, **percentiles(values)}
        if name == "core Retriever.retrieve_documents":
            row.update(ndcg_at_10=metrics["core"]["ndcg@10"], recall_at_10=metrics["core"]["recall@10"])
        if name == "DeepSeekRAGRetriever.retrieve (document)":
            row.update(ndcg_at_10=metrics["adapter"]["ndcg@10"], recall_at_10=metrics["adapter"]["recall@10"])
        rows.append(row)
    overhead = {}
    for level, (ours, theirs) in {
        "chunk": ("DeepSeekRAGRetriever.retrieve", "core Retriever.retrieve"),
        "document": ("DeepSeekRAGRetriever.retrieve (document)", "core Retriever.retrieve_documents"),
    }.items():
        diffs = [a - b for a, b in zip(times[ours], times[theirs])]
        overhead[level] = {
            "paired_median_ms": float(np.median(diffs)),
            "paired_mean_ms": float(statistics.fmean(diffs)),
            "relative_p50": float(np.percentile(times[ours], 50) / np.percentile(times[theirs], 50) - 1),
        }
    result = {
        "data": Path(args.data).name,
        "split": args.split,
        "documents": info["documents"],
        "chunks": info["chunks"],
        "index_spec": info["index_spec"],
        "queries": len(qids),
        "top_k": k,
        "build_seconds": round(build_seconds, 1) if build_seconds else None,
        "chunks_per_second": round(info["chunks"] / build_seconds, 1) if build_seconds else None,
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, encoder on {encoder.device}, "
                   f"torch threads {__import__('torch').get_num_threads()}, load average {os.getloadavg()[0]:.1f}",
        "rows": rows,
        "overhead": overhead,
        "identical_rankings": {"chunk": same_chunks / len(qids), "document": same_docs / len(qids)},
    }
    if args.as_json:
        print(json.dumps(result))
        return
    print(f"{result['data']} ({args.split}): {result['documents']} documents, {result['chunks']} chunks "
          f"({result['index_spec']}), {result['queries']} queries, top_k={k}; {result['machine']}")
    if build_seconds:
        print(f"index built in {result['build_seconds']} s ({result['chunks_per_second']} chunks/s)")
    print(f"\n{'path':<42}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'nDCG@10':>9}{'R@10':>8}")
    for row in rows:
        ndcg = f"{row['ndcg_at_10']:.4f}" if "ndcg_at_10" in row else "-"
        recall = f"{row['recall_at_10']:.4f}" if "recall_at_10" in row else "-"
        print(f"{row['path']:<42}{row['p50_ms']:>9.2f}{row['p95_ms']:>9.2f}{row['mean_ms']:>9.2f}{ndcg:>9}{recall:>8}")
    for level, o in overhead.items():
        print(f"adapter overhead ({level}): {o['paired_median_ms']:+.2f} ms median per query "
              f"(mean {o['paired_mean_ms']:+.2f} ms, p50 {o['relative_p50']:+.1%}); identical rankings "
              f"{result['identical_rankings'][level]:.0%}")


if __name__ == "__main__":
    main()
