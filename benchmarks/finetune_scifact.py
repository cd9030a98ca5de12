"""Fine-tune the bundled all-MiniLM-L6-v2 on SciFact train pairs with LoRA; nDCG@10 on the test split before/after.

    # shared adapter: both sides change, so the 5,183 abstracts are encoded twice (base, then adapter)
    python benchmarks/finetune_scifact.py /path/to/scifact --out /tmp/ft-scifact

    # query-side adapter: documents keep the base model's vectors, so one base index serves both measurements
    deepseek-rag eval --data /path/to/scifact --chunking none --index-spec Flat --keep-index /tmp/sf-base
    python benchmarks/finetune_scifact.py /path/to/scifact --out /tmp/ft-q --adapter-mode query \
        --base-index /tmp/sf-base --epochs 2 --lr 1e-3 --train-seq-length 128 --dev-pool 100

Trains on the judged (claim, abstract) pairs of ``qrels/train.tsv`` (919) — 10% of the claims held out by
hash as the dev set that drives early stopping — optionally with BM25 hard negatives mined from the full
corpus, then scores the 300 test claims against the full 5,183-abstract corpus (one chunk per abstract,
Flat index, title header, 256 tokens) with the core's own metrics. Prints one JSON summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def evaluate(data: Path, adapter: str | None, max_seq_length: int | None) -> dict:
    from deepseek_rag import DocumentIndex, DualEncoder, EncoderConfig, IndexSettings, load_beir_corpus
    from deepseek_rag.ingest.chunking import ChunkingConfig
    from deepseek_rag.evaluation import evaluate_retriever, load_beir_split

    encoder = DualEncoder(EncoderConfig(adapter=adapter, max_seq_length=max_seq_length))
    started = time.perf_counter()
    index = DocumentIndex.build(load_beir_corpus(data), encoder, IndexSettings(index_spec="Flat", chunking=ChunkingConfig(mode="none")))
    metrics = evaluate_retriever(index.as_retriever(), load_beir_split(data, "test"), latency_queries=50)
    metrics["eval_seconds"] = round(time.perf_counter() - started, 1)
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


def evaluate_on_index(data: Path, index_dir: Path, adapter: str | None) -> dict:
    """Test queries encoded with ``adapter`` searched against a saved base-model index (query-side adapters only).

    A ``--adapter-mode query`` adapter leaves document vectors exactly as the base model makes them, so the
    index built once with the base model serves both measurements; only the 300 queries are encoded.
    """
    import numpy as np

    from deepseek_rag import DocumentIndex, DualEncoder, EncoderConfig
    from deepseek_rag.evaluation import load_beir_split, score_run

    index = DocumentIndex.load(index_dir)  # base encoder: the manifest check proves the vectors are the base model's
    split = load_beir_split(data, "test")
    qids = list(split.queries)
    encoder = DualEncoder(EncoderConfig(adapter=adapter)) if adapter else index.encoder
    started = time.perf_counter()
    vectors = encoder.encode_queries([split.queries[q] for q in qids])
    scores, ids = index.vectors.search(np.ascontiguousarray(vectors), 100)
    chunks = index.store.get_chunks(sorted({int(i) for i in ids.ravel() if i >= 0}))
    run = {}
    for row, qid in enumerate(qids):
        docs: dict[str, float] = {}
        for score, chunk_id in zip(scores[row], ids[row]):
            if chunk_id >= 0:
                doc = chunks[int(chunk_id)].doc_id
                docs[doc] = max(docs.get(doc, -1.0), float(score))
        run[qid] = docs
    metrics = score_run(run, split.qrels)
    metrics["eval_seconds"] = time.perf_counter() - started
    return {k: round(v, 5) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="BEIR SciFact folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ft-scifact"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--hard-negatives", type=int, default=1)
    parser.add_argument("--mining", choices=["bm25", "dense"], default="bm25")
    parser.add_argument("--max-seq-length", type=int, default=256, help="Tokens per text at evaluation (the base model's 256).")
    parser.add_argument("--train-seq-length", type=int, default=None, help="Tokens per text in training (default: --max-seq-length).")
    parser.add_argument("--dev-pool", type=int, default=200)
    parser.add_argument("--before-json", type=Path, default=None, help="Reuse a base-model measurement (skips one corpus encoding).")
    parser.add_argument("--skip-before", action="store_true")
    parser.add_argument("--adapter-mode", choices=["shared", "asymmetric", "query"], default="shared")
    parser.add_argument("--base-index", type=Path, default=None,
                        help="Index of the corpus built with the base model (deepseek-rag eval --chunking none --index-spec "
                             "Flat --keep-index DIR); with --adapter-mode query both measurements search it.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from deepseek_rag.ingest.loaders import load_beir_corpus
    from deepseek_rag_finetune import FinetuneConfig, finetune, read_beir_pairs
    from deepseek_rag_finetune.pairs import passage_text

    started = time.perf_counter()
    before = None
    if args.base_index and args.adapter_mode != "query":
        parser.error("--base-index needs --adapter-mode query (other modes change the document vectors)")
    if args.base_index:
        before = evaluate_on_index(args.data, args.base_index, None)
        print("before:", json.dumps(before), flush=True)
    elif not args.before_json and not args.skip_before:
        before = evaluate(args.data, None, args.max_seq_length)
        print("before:", json.dumps(before), flush=True)

    pairs = read_beir_pairs(args.data, "train")
    corpus = [passage_text(d.title, d.text) for d in load_beir_corpus(args.data)]
    config = FinetuneConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
        temperature=args.temperature, hard_negatives=args.hard_negatives, mining=args.mining,
        max_seq_length=args.train_seq_length or args.max_seq_length, dev_fraction=0.1, dev_pool=args.dev_pool, patience=2,
        mlflow=False, adapter_mode=args.adapter_mode,
    )
    train_started = time.perf_counter()
    result = finetune(pairs, args.out, config, corpus=corpus)
    train_seconds = time.perf_counter() - train_started
    if args.base_index:
        after = evaluate_on_index(args.data, args.base_index, str(args.out))
    else:
        after = evaluate(args.data, str(args.out), args.max_seq_length)
    if args.before_json:  # read late: it may be measured by another process while this one trains
        before = json.loads(args.before_json.read_text())
    report = result.report
    summary = {
        "pairs": len(pairs),
        "config": {k: report["config"][k] for k in ("lora_r", "lora_alpha", "epochs", "batch_size", "lr", "temperature",
                                                   "hard_negatives", "mining", "max_seq_length", "adapter_mode")},
        "target_modules": json.loads((args.out / "deepseek_rag_adapter.json").read_text())["lora"]["target_modules"],
        "steps": report["steps"],
        "dev_before": report["dev_before"], "dev_after": report["dev_after"],
        "test_ndcg@10_before": before and before["ndcg@10"], "test_ndcg@10_after": after["ndcg@10"],
        "test_recall@100_before": before and before.get("recall@100"), "test_recall@100_after": after.get("recall@100"),
        "delta_ndcg@10": before and round(after["ndcg@10"] - before["ndcg@10"], 5),
        "trainable_parameters": report["trainable_parameters"], "trainable_share": report["trainable_share"],
        "adapter_bytes": report["adapter_bytes"], "base_model_bytes": report["base_model_bytes"],
        "train_seconds": round(train_seconds, 1), "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print("after:", json.dumps(after), flush=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
