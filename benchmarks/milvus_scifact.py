"""SciFact on the Milvus backend (milvus-lite) next to FAISS: nDCG@10 per index type class, query p50 side by side.

    python benchmarks/milvus_scifact.py ../shared/datasets/scifact --index bench-out/scifact-default-fp32

Takes a built FAISS index of SciFact (``--index``; built here into ``--out`` when absent) and, without encoding
the corpus again, copies its chunks, vectors and BM25 side into each pair being compared: FAISS ``Flat`` vs
Milvus ``FLAT`` and FAISS ``IVF{n},SQ8`` vs Milvus ``IVF_SQ8`` with the same list count and nprobe. The Milvus
copies are saved into a milvus-lite file and loaded back, so they are searched as a user's index would be.
Scores dense document nDCG@10 (the vector backend is the only difference; hybrid too for the exact pair) with
one set of query vectors, then times single queries round-robin over all four indexes in one loop: the vector
search alone (``search_vectors``) and the whole retrieval (encode + dense + BM25 + fusion + fetch). Timings are
ratios to read side by side in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from deepseek_rag import DocumentIndex, DualEncoder  # noqa: E402
from deepseek_rag.evaluation import load_beir_split, rank_documents, score_run  # noqa: E402
from deepseek_rag.ingest.loaders import load_beir_corpus  # noqa: E402
from deepseek_rag.settings import IndexSettings  # noqa: E402
from deepseek_rag.vectors.specs import default_nprobe, suggest_nlist  # noqa: E402


def on_milvus(index: DocumentIndex, uri: str, spec: str, folder: Path) -> DocumentIndex:
    """``index``'s chunks, vectors and BM25 side written into a Milvus collection under ``spec``, loaded back."""
    settings = IndexSettings.from_dict({**index.settings.to_dict(), "index_spec": spec,
                                        "vector_store": {"backend": "milvus", "uri": uri, "collection": folder.name}})
    copy = DocumentIndex(index.encoder, settings, _snapshot=index.with_vector_spec("Flat").snapshot())
    copy.save(folder, overwrite=True)
    return DocumentIndex.load(folder, index.encoder, writable=False)


def dense_ndcg(index: DocumentIndex, split, query_vectors: np.ndarray, nprobe: int | None) -> float:
    retriever = index.as_retriever(mode="dense", nprobe=nprobe)
    docs = retriever.documents_by_vectors(query_vectors, 100)
    run = {q: {d.doc_id: d.score for d in hits} for q, hits in zip(split.queries, docs)}
    return score_run(run, split.qrels)["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR SciFact folder")
    parser.add_argument("--index", default=None, help="A FAISS SciFact index to copy from (default: build one in --out).")
    parser.add_argument("--out", default="bench-out/milvus-scifact", help="Where the Milvus file, copies and results go.")
    parser.add_argument("--dtype", default="float32", help="Encoder precision of the queries (and of a build here).")
    parser.add_argument("--model", default=None, help="Model folder (default: the bundled all-MiniLM-L6-v2).")
    parser.add_argument("--latency-queries", type=int, default=200, help="Single queries timed per index.")
    args = parser.parse_args()
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    split = load_beir_split(args.data, "test")
    encoder = DualEncoder(model=args.model, dtype=args.dtype)
    source = Path(args.index) if args.index else out / "faiss-default"
    if not (source / "CURRENT").exists():
        DocumentIndex.build(load_beir_corpus(args.data), encoder, progress=True).save(source)
    base = DocumentIndex.load(source, encoder, writable=False)
    chunks = base.info()["chunks"]
    nlist = suggest_nlist(chunks)
    nprobe = default_nprobe(nlist)
    uri = f"milvus://{out / 'scifact.db'}"

    started = time.perf_counter()
    indexes = {
        "faiss Flat": (base.with_vector_spec("Flat"), None),
        "milvus FLAT": (on_milvus(base, uri, "FLAT", out / "milvus_flat"), None),
        f"faiss IVF{nlist},SQ8": (base.with_vector_spec(f"IVF{nlist},SQ8"), nprobe),
        f"milvus IVF_SQ8 nlist={nlist}": (on_milvus(base, uri, f"IVF_SQ8,nlist={nlist}", out / "milvus_ivf_sq8"), nprobe),
    }
    print(f"built the four indexes from {source} ({chunks} chunks) in {time.perf_counter() - started:.0f}s")
    query_vectors = encoder.encode_queries(list(split.queries.values()))
    rows = {}
    for name, (index, probe) in indexes.items():
        exact = probe is None  # hybrid scored for the exact pair only (BM25 is the same copy in all four)
        hybrid = score_run(rank_documents(index.as_retriever(), split), split.qrels)["ndcg@10"] if exact else None
        rows[name] = {"spec": index.info()["index_spec"], "nprobe": probe,
                      "dense_ndcg@10": dense_ndcg(index, split, query_vectors, probe), "hybrid_ndcg@10": hybrid,
                      "search_ms": [], "retrieve_ms": []}

    # Latency: every index answers the same query in turn, so load on the machine falls on all of them alike.
    retrievers = {name: index.as_retriever(nprobe=probe) for name, (index, probe) in indexes.items()}
    texts = list(split.queries.values())[: args.latency_queries]
    for name, (index, probe) in indexes.items():  # warm up
        index.search_vectors(query_vectors[:1], 10, nprobe=probe)
        retrievers[name].retrieve_documents(texts[0], 10)
    for i, text in enumerate(texts):
        for name, (index, probe) in indexes.items():
            started = time.perf_counter()
            index.search_vectors(query_vectors[i:i + 1], 10, nprobe=probe)
            rows[name]["search_ms"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            retrievers[name].retrieve_documents(text, 10)
            rows[name]["retrieve_ms"].append((time.perf_counter() - started) * 1000)
    for row in rows.values():
        for key in ("search_ms", "retrieve_ms"):
            row[key.replace("_ms", "_p50_ms")] = float(np.percentile(row.pop(key), 50))

    print(f"\nSciFact test, {len(split.queries)} queries, {chunks} chunks; single-query p50 over {len(texts)} "
          "queries, round-robin in one run")
    print(f"{'index':<28}{'nprobe':>7}{'dense nDCG@10':>15}{'hybrid':>9}{'search p50':>12}{'retrieve p50':>14}")
    for name, row in rows.items():
        hybrid = f"{row['hybrid_ndcg@10']:.4f}" if row["hybrid_ndcg@10"] is not None else "-"
        print(f"{name:<28}{row['nprobe'] or '-'!s:>7}{row['dense_ndcg@10']:>15.4f}{hybrid:>9}"
              f"{row['search_p50_ms']:>10.2f}ms{row['retrieve_p50_ms']:>12.2f}ms")
    names = list(rows)
    for faiss_name, milvus_name in ((names[0], names[1]), (names[2], names[3])):
        delta = rows[milvus_name]["dense_ndcg@10"] - rows[faiss_name]["dense_ndcg@10"]
        ratio = rows[milvus_name]["search_p50_ms"] / rows[faiss_name]["search_p50_ms"]
        print(f"{milvus_name} vs {faiss_name}: nDCG@10 {delta:+.4f}, search p50 ×{ratio:.1f}")
    (out / "results.json").write_text(json.dumps({"chunks": chunks, "nlist": nlist, "nprobe": nprobe, "rows": rows},
                                                 indent=2))


if __name__ == "__main__":
    main()
