"""Ours vs LlamaIndex's own pipeline, side by side in one process: build speed, latency, memory, disk, nDCG@10.

    python benchmarks/compare_llamaindex.py ../shared/datasets/scifact --json bench-out/compare-scifact.json
    python benchmarks/compare_llamaindex.py ../shared/datasets/cuad --limit-docs 40 --json bench-out/compare-cuad.json

Pipelines, all with the same all-MiniLM-L6-v2 weights (the bundled default):

* ``ours-fp32``: ``DocumentIndex.build`` with the defaults (token windows that fit the model, contextual
  headers, hybrid retrieval, ``auto`` index), encoder in float32; queried with ``retrieve_documents``;
* ``ours-bf16``: the same in bfloat16. On a CPU without native bf16 (AVX512-BF16 / AMX) bf16 is emulated
  and many times slower, so unless ``--bf16 always`` only a 64-chunk encode sample is timed against fp32
  and the pipeline is reported as skipped, with that ratio;
* ``llamaindex-default``: ``VectorStoreIndex.from_documents(docs, embed_model=HuggingFaceEmbedding(...))``
  with LlamaIndex's defaults (SentenceSplitter 1024/200, SimpleVectorStore), queried through
  ``index.as_retriever(similarity_top_k=...)``;
* ``ours-in-llamaindex``: ``DeepSeekRAGRetriever.from_defaults(documents=<LlamaIndex Documents>,
  level="document")`` built and queried through LlamaIndex's ``BaseRetriever.retrieve``.

Every index is built first (timed; peak RSS sampled every 10 ms during the build, reported above the
RSS before it), saved (bytes on disk) and kept; then each query runs through every pipeline in a freshly
shuffled order, so a busy machine or warm caches favour none. Documents are ranked by their best chunk
(LlamaIndex: first appearance of ``ref_doc_id``) and scored with nDCG@10 against the qrels. A CUAD folder
(``qrels/test_spans.jsonl``) is scored at document level: the contract holding the answer.

``--limit-docs`` keeps the judged documents first, then others up to N, and only the queries whose
judged documents are all kept: say so when quoting figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from adapter_overhead import select_corpus
from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.encoding.dual_encoder import default_model_path
from deepseek_rag.evaluation import BeirSplit, load_beir_split, score_run
from deepseek_rag.ingest.loaders import load_beir_corpus

TOP_K = 10


# ----------------------------------------------------------------------------------------------- data
def load_data(folder: str, limit: int | None) -> tuple[list[Document], BeirSplit]:
    """Documents and judged queries: a BEIR split, or CUAD's span qrels turned into contract-level judgements."""
    spans = Path(folder) / "qrels" / "test_spans.jsonl"
    if spans.is_file():
        qrels: dict[str, dict[str, int]] = {}
        for row in map(json.loads, open(spans, encoding="utf-8")):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = 1
        queries = {r["_id"]: r["text"] for r in map(json.loads, open(Path(folder) / "queries.jsonl", encoding="utf-8"))}
        split = BeirSplit({q: queries[q] for q in qrels}, qrels)
    else:
        split = load_beir_split(folder)
    documents, split = select_corpus(folder, split, limit) if limit else (load_beir_corpus(folder), split)
    return documents, split


# ----------------------------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Sample this process's RSS every 10 ms while the block runs: ``peak`` and ``before`` in bytes."""

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.before = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------------------------- pipelines
class Pipeline:
    """One way to index and search: ``build`` returns the chunk count; ``save`` writes to a folder;
    ``rank`` returns {doc_id: score} for a query."""

    name: str

    def build(self, documents: list[Document]) -> int: ...
    def save(self, folder: Path) -> None: ...
    def rank(self, query: str) -> dict[str, float]: ...
    def embedded_tokens(self) -> int:
        """Word pieces the encoder read while building (special tokens included, truncation applied)."""
        ...


class Ours(Pipeline):
    def __init__(self, name: str, encoder: DualEncoder) -> None:
        self.name, self.encoder = name, encoder

    def build(self, documents):
        self.index = DocumentIndex.build(documents, self.encoder, progress=False)
        self.retriever = self.index.as_retriever(top_k=TOP_K)
        return self.index.info()["chunks"]

    def save(self, folder):
        self.index.save(folder)

    def rank(self, query):
        return {d.doc_id: d.score for d in self.retriever.retrieve_documents(query)}

    def embedded_tokens(self):
        return _ours_tokens(self.index)


def llama_documents(documents: list[Document]) -> list:
    from llama_index.core import Document as LlamaDocument

    return [LlamaDocument(text=d.text, id_=d.id, metadata=dict(d.metadata)) for d in documents]


class LlamaIndexDefault(Pipeline):
    name = "llamaindex-default"

    def __init__(self) -> None:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        self.embed = HuggingFaceEmbedding(model_name=default_model_path(), device="cpu")

    def build(self, documents):
        from llama_index.core import VectorStoreIndex

        self.index = VectorStoreIndex.from_documents(llama_documents(documents), embed_model=self.embed)
        self.retriever = self.index.as_retriever(similarity_top_k=TOP_K)
        return len(self.index.docstore.docs)

    def save(self, folder):
        self.index.storage_context.persist(persist_dir=str(folder))

    def rank(self, query):
        ranked: dict[str, float] = {}
        for hit in self.retriever.retrieve(query):
            ranked.setdefault(hit.node.ref_doc_id, float(hit.score))
        return ranked

    def embedded_tokens(self):
        from llama_index.core.schema import MetadataMode

        model = self.embed._model
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in self.index.docstore.docs.values()]
        return sum(len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"])


class OursInLlamaIndex(Pipeline):
    name = "ours-in-llamaindex"

    def __init__(self, encoder: DualEncoder) -> None:
        self.encoder = encoder

    def build(self, documents):
        from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever

        self.retriever = DeepSeekRAGRetriever.from_defaults(
            documents=llama_documents(documents), encoder=self.encoder, similarity_top_k=TOP_K, level="document",
            progress=False,
        )
        return self.retriever.index.info()["chunks"]

    def save(self, folder):
        self.retriever.persist(folder)

    def rank(self, query):
        return {hit.node.node_id: float(hit.score) for hit in self.retriever.retrieve(query)}

    def embedded_tokens(self):
        return _ours_tokens(self.retriever.index)


def _ours_tokens(index: DocumentIndex) -> int:
    encoder = index.encoder
    titles = {doc_id: index.store.get_document(doc_id).title for doc_id in index.document_ids()}
    texts = [encoder.document_prefix + index.embedding_text(c, titles[c.doc_id])
             for batch in index.store.iter_chunks() for c in batch]
    return sum(len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)["input_ids"])


def bf16_sample_ratio(fp32: DualEncoder, documents: list[Document]) -> dict[str, float]:
    """fp32 vs bf16 encode speed on 64 chunk-sized texts, for CPUs where the bf16 pipeline is skipped."""
    texts = [d.text[:1200] for d in documents[:64]]
    bf16 = DualEncoder(dtype="bfloat16")
    rates = {}
    for name, encoder in (("float32", fp32), ("bfloat16", bf16)):
        encoder.encode_documents(texts[:4])
        started = time.perf_counter()
        encoder.encode_documents(texts)
        rates[name] = len(texts) / (time.perf_counter() - started)
    return {"fp32_texts_per_s": rates["float32"], "bf16_texts_per_s": rates["bfloat16"],
            "bf16_vs_fp32": rates["bfloat16"] / rates["float32"]}


def native_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# ----------------------------------------------------------------------------------------------- run
def measure_builds(pipelines: list[Pipeline], documents: list[Document], workdir: Path) -> dict[str, dict]:
    stats = {}
    for pipeline in pipelines:
        with PeakRss() as memory:
            started = time.perf_counter()
            chunks = pipeline.build(documents)
            seconds = time.perf_counter() - started
        folder = workdir / pipeline.name
        pipeline.save(folder)
        stats[pipeline.name] = {
            "build_s": seconds,
            "docs_per_s": len(documents) / seconds,
            "chunks": chunks,
            "chunks_per_s": chunks / seconds,
            "peak_rss_build_mb": (memory.peak - memory.before) / 2**20,
            "bytes_on_disk": folder_bytes(folder),
        }
        print(f"  built {pipeline.name}: {chunks} chunks in {seconds:.0f} s", flush=True)
    return stats


def measure_queries(pipelines: list[Pipeline], split: BeirSplit, max_queries: int | None) -> dict[str, dict]:
    qids = list(split.queries)[:max_queries]
    for qid in qids[:5]:  # warm every path
        for pipeline in pipelines:
            pipeline.rank(split.queries[qid])
    times: dict[str, list[float]] = {p.name: [] for p in pipelines}
    runs: dict[str, dict[str, dict[str, float]]] = {p.name: {} for p in pipelines}
    order, shuffler = list(pipelines), random.Random(0)
    for qid in qids:
        shuffler.shuffle(order)
        for pipeline in order:
            started = time.perf_counter()
            ranked = pipeline.rank(split.queries[qid])
            times[pipeline.name].append((time.perf_counter() - started) * 1000)
            runs[pipeline.name][qid] = {d: s for d, s in ranked.items() if d != qid}
    qrels = {q: split.qrels[q] for q in qids}
    out = {}
    for pipeline in pipelines:
        metrics = score_run(runs[pipeline.name], qrels, recall_k=(10,))
        values = times[pipeline.name]
        out[pipeline.name] = {"query_p50_ms": float(np.percentile(values, 50)), "query_p99_ms": float(np.percentile(values, 99)),
                              "ndcg@10": metrics["ndcg@10"], "recall@10": metrics["recall@10"], "queries": len(qids)}
    return out


def print_table(rows: dict[str, dict], reference: str) -> None:
    columns = [("docs/s", "docs_per_s", ".1f"), ("chunks/s", "chunks_per_s", ".1f"), ("chunks", "chunks", "d"),
               ("tokens read", "embedded_tokens", "d"), ("tokens/s", "tokens_per_s", ".0f"),
               ("p50 ms", "query_p50_ms", ".1f"), ("p99 ms", "query_p99_ms", ".1f"),
               ("build RSS MB", "peak_rss_build_mb", ".0f"), ("disk MB", "disk_mb", ".1f"), ("nDCG@10", "ndcg@10", ".4f")]
    print(f"\n{'pipeline':<22}" + "".join(f"{title:>13}" for title, _, _ in columns))
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name:<22}  skipped: {row['skipped']}")
            continue
        row["disk_mb"] = row["bytes_on_disk"] / 1e6
        print(f"{name:<22}" + "".join(f"{row[key]:>13{fmt}}" for _, key, fmt in columns))
    if reference in rows:
        ref = rows[reference]
        print(f"\nratios to {reference}:")
        for name, row in rows.items():
            if name == reference or "skipped" in row:
                continue
            print(f"  {name}: query p50 {row['query_p50_ms'] / ref['query_p50_ms']:.2f}x, "
                  f"docs/s {row['docs_per_s'] / ref['docs_per_s']:.2f}x, tokens/s {row['tokens_per_s'] / ref['tokens_per_s']:.2f}x, "
                  f"tokens read {row['embedded_tokens'] / ref['embedded_tokens']:.2f}x, disk {row['bytes_on_disk'] / ref['bytes_on_disk']:.2f}x, "
                  f"nDCG@10 {row['ndcg@10'] - ref['ndcg@10']:+.4f}")
    if "ours-fp32" in rows and "ours-in-llamaindex" in rows:
        core, adapter = rows["ours-fp32"], rows["ours-in-llamaindex"]
        print(f"  ours-in-llamaindex vs ours-fp32: query p50 {adapter['query_p50_ms'] / core['query_p50_ms'] - 1:+.1%}, "
              f"docs/s {adapter['docs_per_s'] / core['docs_per_s'] - 1:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (SciFact) or CUAD folder (qrels/test_spans.jsonl)")
    parser.add_argument("--limit-docs", type=int, default=None, help="Index at most this many documents (judged first).")
    parser.add_argument("--max-queries", type=int, default=None, help="Time and score only the first N judged queries.")
    parser.add_argument("--pipelines", default="ours-fp32,ours-bf16,llamaindex-default,ours-in-llamaindex")
    parser.add_argument("--bf16", choices=("auto", "always"), default="auto",
                        help="auto: run ours-bf16 only on a CPU with native bf16, else time a 64-chunk sample.")
    parser.add_argument("--json", dest="json_out", default=None, help="Also write the results here.")
    args = parser.parse_args()
    try:
        from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever  # noqa: F401
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"needs llama-index-embeddings-huggingface and the adapter (make install): {exc}") from None
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    documents, split = load_data(args.data, args.limit_docs)
    chars = sum(len(d.text) for d in documents)
    machine = (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__} "
               f"threads {torch.get_num_threads()}, native bf16: {native_bf16()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{Path(args.data).name}: {len(documents)} documents ({chars:,} chars), {len(split.queries)} judged queries; {machine}")

    fp32 = DualEncoder(dtype="float32")
    wanted = args.pipelines.split(",")
    pipelines: list[Pipeline] = []
    rows: dict[str, dict] = {}
    factories: dict[str, Callable[[], Pipeline]] = {
        "ours-fp32": lambda: Ours("ours-fp32", fp32),
        "ours-bf16": lambda: Ours("ours-bf16", DualEncoder(dtype="bfloat16")),
        "llamaindex-default": LlamaIndexDefault,
        "ours-in-llamaindex": lambda: OursInLlamaIndex(fp32),
    }
    for name in wanted:
        if name == "ours-bf16" and args.bf16 == "auto" and not native_bf16():
            sample = bf16_sample_ratio(fp32, documents)
            rows[name] = {"skipped": f"no native bf16 on this CPU: bf16 encodes at {sample['bf16_vs_fp32']:.2f}x "
                                     f"fp32's speed (64-chunk sample); --bf16 always to run it", **sample}
            continue
        pipelines.append(factories[name]())
    workdir = Path(tempfile.mkdtemp(prefix="compare-llamaindex-"))
    try:
        builds = measure_builds(pipelines, documents, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    queries = measure_queries(pipelines, split, args.max_queries)
    for pipeline in pipelines:
        tokens = pipeline.embedded_tokens()
        rows[pipeline.name] = {**builds[pipeline.name], **queries[pipeline.name], "embedded_tokens": tokens,
                               "tokens_per_s": tokens / builds[pipeline.name]["build_s"]}
    rows = {name: rows[name] for name in wanted if name in rows}
    print_table(rows, "llamaindex-default")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"data": Path(args.data).name, "documents": len(documents),
                                                   "queries": len(split.queries), "machine": machine, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
