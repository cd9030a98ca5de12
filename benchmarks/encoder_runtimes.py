"""Encoder runtimes on a BEIR corpus: torch vs its ONNX (float32, int8) and TorchScript exports, one run.

    python benchmarks/encoder_runtimes.py ../shared/datasets/scifact --out bench-out/runtimes \
        --json bench-out/encoder-runtimes.json

Everything comes from ``deepseek-rag export`` folders of one torch encoder (``--model``; default the bundled
all-MiniLM-L6-v2, float32), written to ``--out/exports``. Sections, each side by side in one process unless said:

1. **parity**: cosine of every export's vectors to torch's on the first ``--parity-chunks`` chunk texts a default
   build embeds (headers included), and on the test queries (query side);
2. **throughput**: tokens/s encoding those chunks, best of ``--rounds`` rounds alternating between runtimes;
3. **quality**: ``deepseek-rag eval --chunking none --index-spec Flat --mode dense`` with each runtime, each in its
   own process (the whole command: build + score); nDCG@10 side by side (ONNX float32 and TorchScript should
   equal torch to 4 decimals; int8's difference is the quantisation cost);
4. **latency**: single queries (encode + dense search, top 10) on the torch-built Flat index, ``--queries``
   test queries, each sent through torch, ONNX float32 and ONNX int8 (``allow_precision_mismatch``) in a
   shuffled order: p50 / p99 ms;
5. **one-shot**: the whole process of ``deepseek-rag query`` on a small index (the first ``--oneshot-docs``
   documents), torch vs ``--model <onnx export>``, alternating, ``--oneshot-runs`` each: wall seconds, and
   whether a "Loading weights" bar leaked into the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder, IndexSettings
from deepseek_rag.encoding.export import export_encoder
from deepseek_rag.evaluation import load_beir_split
from deepseek_rag.ingest.loaders import load_beir_corpus

RUNTIMES = ("torch", "onnx-fp32", "onnx-int8", "torchscript")


def export_all(encoder: DualEncoder, folder: Path) -> dict[str, Path]:
    """The three exports of ``encoder``, rewritten on every run."""
    return {"onnx-fp32": export_encoder(encoder, folder / "onnx-fp32", format="onnx", overwrite=True),
            "onnx-int8": export_encoder(encoder, folder / "onnx-int8", format="onnx", int8=True, overwrite=True),
            "torchscript": export_encoder(encoder, folder / "torchscript", format="torchscript", overwrite=True)}


def chunk_sample(data: str, encoder: DualEncoder, limit: int) -> list[str]:
    """The first ``limit`` chunk texts a default build embeds (contextual header + chunk)."""
    index = DocumentIndex(encoder)  # default settings; nothing is encoded here
    texts: list[str] = []
    for document in load_beir_corpus(data):
        texts.extend(index.embedding_text(chunk, document.title) for chunk in index.chunk(document))
        if len(texts) >= limit:
            break
    return texts[:limit]


def parity_and_speed(encoders: dict[str, DualEncoder], texts: list[str], queries: list[str], rounds: int) -> dict:
    """Cosine to torch (documents and queries) and tokens/s (documents, best round), per runtime."""
    reference = encoders["torch"]
    tokens = sum(len(ids) for ids in reference.tokenizer(reference._prefixed(texts, "document"), truncation=True,
                                                           max_length=reference.max_seq_length)["input_ids"])
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for encoder in encoders.values():  # warm-up: TorchScript profiles its first runs, allocators grow
        encoder.encode_documents(texts[:16])
    for _ in range(rounds):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            vectors[name] = encoder.encode_documents(texts)
            best[name] = max(best.get(name, 0.0), tokens / (time.perf_counter() - started))
    query_reference = reference.encode_queries(queries)
    rows = {}
    for name, encoder in encoders.items():
        documents = np.sum(vectors[name] * vectors["torch"], axis=1)
        query_side = np.sum(encoder.encode_queries(queries) * query_reference, axis=1)
        rows[name] = {"chunks": len(texts), "tokens": tokens, "tokens_per_s": round(best[name], 1),
                      "vs_torch": round(best[name] / best["torch"], 3),
                      "cosine_min": float(documents.min()), "cosine_mean": float(documents.mean()),
                      "query_cosine_min": float(query_side.min())}
    return rows


def eval_ndcg(data: str, model: str | None, extra: list[str]) -> dict:
    """``deepseek-rag eval --chunking none --index-spec Flat --mode dense --json`` in its own process."""
    command = [sys.executable, "-m", "deepseek_rag.cli", "eval", "--data", data, "--chunking", "none",
               "--index-spec", "Flat", "--mode", "dense", "--json", *(["--model", model] if model else []), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"eval failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"ndcg@10": result["ndcg@10"], "recall@100": result.get("recall@100"),
            "chunks_per_second": result.get("chunks_per_second"), "wall_s": round(time.perf_counter() - started, 1)}


def latency(index_dir: Path, encoders: dict[str, DualEncoder], queries: list[str], seed: int = 0) -> dict:
    """Single-query encode + dense search (top 10) per runtime, queries interleaved in a shuffled order."""
    retrievers = {name: DocumentIndex.load(index_dir, encoder, writable=False).as_retriever(top_k=10, mode="dense")
                  for name, encoder in encoders.items()}
    for retriever in retrievers.values():  # warm-up: first calls allocate
        for query in queries[:5]:
            retriever.retrieve(query)
    timings: dict[str, list[float]] = {name: [] for name in retrievers}
    order = list(retrievers)
    rng = random.Random(seed)
    for query in queries:
        rng.shuffle(order)
        for name in order:
            started = time.perf_counter()
            retrievers[name].retrieve(query)
            timings[name].append((time.perf_counter() - started) * 1000)
    p50 = {name: float(np.percentile(t, 50)) for name, t in timings.items()}
    return {name: {"queries": len(t), "p50_ms": round(p50[name], 2), "p99_ms": round(float(np.percentile(t, 99)), 2),
                   "p50_vs_torch": round(p50[name] / p50["torch"], 3)} for name, t in timings.items()}


def one_shot(index_dir: Path, models: dict[str, str | None], query: str, runs: int) -> dict:
    """Whole-process ``deepseek-rag query`` wall time per model (None: the encoder the index names), alternating."""
    walls: dict[str, list[float]] = {name: [] for name in models}
    leaked: dict[str, bool] = {name: False for name in models}
    for _ in range(runs):
        for name, model in models.items():
            command = [sys.executable, "-m", "deepseek_rag.cli", "query", str(index_dir), query, "--top-k", "3",
                       *(["--model", model] if model else [])]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            walls[name].append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"query failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
            leaked[name] |= "Loading weights" in done.stdout + done.stderr
    return {name: {"runs": runs, "median_s": round(float(np.median(w)), 3), "min_s": round(min(w), 3),
                   "progress_bar_leaked": leaked[name]} for name, w in walls.items()}


def print_table(title: str, rows: dict, columns: list[str]) -> None:
    widths = [max(12, len(c) + 2) for c in columns]

    def cell(value, width: int) -> str:
        if isinstance(value, float):
            return f"{value:>{width}.1f}" if abs(value) >= 100 else f"{value:>{width}.5f}"
        return f"{str(value):>{width}}"

    print(f"\n{title}")
    print(f"{'runtime':<14}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for name, row in rows.items():
        print(f"{name:<14}" + "".join(cell(row.get(c), w) for c, w in zip(columns, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    parser.add_argument("--out", default="bench-out/runtimes", help="Exports and indexes are written here.")
    parser.add_argument("--model", default=None, help="Source model folder (default: the bundled all-MiniLM-L6-v2).")
    parser.add_argument("--parity-chunks", type=int, default=1000, help="Chunk texts for parity and tokens/s.")
    parser.add_argument("--queries", type=int, default=300, help="Test queries timed one at a time.")
    parser.add_argument("--rounds", type=int, default=3, help="Throughput rounds per runtime (best counts).")
    parser.add_argument("--oneshot-docs", type=int, default=200, help="Documents in the one-shot query index.")
    parser.add_argument("--oneshot-runs", type=int, default=5, help="Whole-process queries per runtime.")
    parser.add_argument("--skip-eval", action="store_true", help="Skip the four eval builds (sections 3).")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch_encoder = DualEncoder(model=args.model, dtype="float32", device="cpu")
    exports = export_all(torch_encoder, out / "exports")
    encoders = {"torch": torch_encoder, "onnx-fp32": DualEncoder(model=str(exports["onnx-fp32"])),
                "onnx-int8": DualEncoder(model=str(exports["onnx-int8"]), allow_precision_mismatch=True),
                "torchscript": DualEncoder(model=str(exports["torchscript"]))}
    split = load_beir_split(args.data, "test")
    queries = list(split.queries.values())[: args.queries]
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads",
                    "model": args.model or "bundled all-MiniLM-L6-v2"}

    texts = chunk_sample(args.data, torch_encoder, args.parity_chunks)
    result["parity"] = parity_and_speed(encoders, texts, queries, args.rounds)
    print_table(f"parity and throughput ({len(texts)} chunk texts, {len(queries)} queries; best of {args.rounds})",
                result["parity"], ["cosine_min", "cosine_mean", "query_cosine_min", "tokens_per_s", "vs_torch"])

    flat = out / "flat-none.idx"
    if not args.skip_eval:
        models = {"torch": (args.model, ["--dtype", "float32", "--keep-index", str(flat)]),
                  "onnx-fp32": (str(exports["onnx-fp32"]), []), "onnx-int8": (str(exports["onnx-int8"]), []),
                  "torchscript": (str(exports["torchscript"]), [])}
        result["quality"] = {name: eval_ndcg(args.data, model, extra) for name, (model, extra) in models.items()}
        for row in result["quality"].values():
            row["ndcg_diff_vs_torch"] = round(row["ndcg@10"] - result["quality"]["torch"]["ndcg@10"], 5)
        print_table("quality: eval --chunking none --index-spec Flat --mode dense", result["quality"],
                    ["ndcg@10", "ndcg_diff_vs_torch", "recall@100", "chunks_per_second", "wall_s"])
    if not (flat / "CURRENT").exists():
        settings = IndexSettings.from_dict({"index_spec": "Flat", "chunking": {"mode": "none"}})
        DocumentIndex.build(load_beir_corpus(args.data), torch_encoder, settings).save(flat, overwrite=True)
    result["latency"] = latency(flat, {k: encoders[k] for k in ("torch", "onnx-fp32", "onnx-int8")}, queries)
    print_table(f"single-query latency: encode + dense search, {len(queries)} queries, shuffled", result["latency"],
                ["p50_ms", "p99_ms", "p50_vs_torch"])

    small = out / "oneshot.idx"
    documents = load_beir_corpus(args.data)[: args.oneshot_docs]
    DocumentIndex.build(documents, torch_encoder, IndexSettings(index_spec="Flat")).save(small, overwrite=True)
    result["one_shot"] = one_shot(small, {"torch": None, "onnx-fp32": str(exports["onnx-fp32"])}, queries[0],
                                  args.oneshot_runs)
    print_table(f"one-shot `deepseek-rag query` ({len(documents)} documents), whole process", result["one_shot"],
                ["median_s", "min_s", "progress_bar_leaked"])
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
