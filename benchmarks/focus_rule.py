"""The focus rule on a BEIR data set: chunk-level ranking with ``focus_documents="auto"`` (the default) vs off.

    python benchmarks/focus_rule.py ../shared/datasets/scifact --index <a saved index of it> --dtype float32
    python benchmarks/focus_rule.py ../shared/datasets/cmd_im_sample --out bench-out/cmd-index

Chunk level is what the adapters return to a query engine: for each judged query the top ``--top-k``
chunks, their documents in order of first appearance, scored with nDCG@10 and Recall@10 against the
qrels (document level, ``deepseek-rag eval``, never focuses: the rule is a chunk-level one). Also printed:
how many queries the rule focused, and on how many the two rankings differ at all. On corpora of short
documents (abstracts, answers) the rule must change nothing; CUAD's long contracts are
``benchmarks/cuad_spans.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from deepseek_rag import DocumentIndex
from deepseek_rag.evaluation import load_beir_split, score_run
from deepseek_rag.ingest.loaders import load_beir_corpus


def chunk_level_run(retriever, queries: dict[str, str], top_k: int) -> tuple[dict, list]:
    """{qid: {doc_id: score}} from the documents of the top chunks, best first; and the raw hits."""
    qids = list(queries)
    hits = retriever.retrieve_batch([queries[q] for q in qids], top_k)
    run = {}
    for qid, ranked in zip(qids, hits):
        order = [d for d in dict.fromkeys(h.doc_id for h in ranked) if d != qid]
        run[qid] = {doc: float(len(order) - rank) for rank, doc in enumerate(order)}
    return run, hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    parser.add_argument("--index", default=None, help="A saved index of this corpus to read (not modified).")
    parser.add_argument("--out", default=None, help="Without --index: build with the defaults and save here.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--top-k", type=int, default=10, help="Chunks returned per query.")
    parser.add_argument("--dtype", default="auto", help="Encoder dtype (float32 for figures compared with fp32 ones).")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    split = load_beir_split(args.data, args.split)
    if args.index:
        index = DocumentIndex.load(args.index, encoder_overrides={"dtype": args.dtype}, writable=False)
    else:
        started = time.perf_counter()
        index = DocumentIndex.build(load_beir_corpus(args.data))
        print(f"built {index.info()['chunks']} chunks in {time.perf_counter() - started:.0f} s", flush=True)
        if args.out:
            index.save(args.out, overwrite=True)
    texts = split.queries
    table = {}
    rankings = {}
    for name, focus in (("auto (default)", "auto"), ("off (focus_documents=0)", 0)):
        retriever = index.as_retriever(focus_documents=focus)
        run, hits = chunk_level_run(retriever, texts, args.top_k)
        rankings[name] = [[(h.chunk_id, h.start, h.end) for h in row] for row in hits]
        table[name] = score_run(run, split.qrels, recall_k=(10,))
        if focus == "auto":
            reasons = Counter(d.reason or "plain" for d in retriever.focus_decisions(list(texts.values()), args.top_k))
            table[name]["decisions"] = dict(reasons)
    differ = sum(a != b for a, b in zip(*rankings.values()))
    print(f"{Path(args.data).name} ({args.split}): {len(texts)} queries, {index.info()['chunks']} chunks, top {args.top_k} chunks")
    for name, row in table.items():
        print(f"  {name:<24} nDCG@10 {row['ndcg@10']:.4f}  Recall@10 {row['recall@10']:.4f}  "
              + (f"decisions {row['decisions']}" if "decisions" in row else ""))
    print(f"  queries whose chunk ranking differs: {differ}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"results": table, "rankings_differ": differ}, indent=2))


if __name__ == "__main__":
    main()
