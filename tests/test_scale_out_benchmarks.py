"""The Milvus-vs-FAISS and Dask-vs-one-process benchmarks run end to end on a tiny BEIR folder (a tiny model), so
the README's commands keep working and their comparisons hold: the same ranking on both backends, the same
chunks and vectors from both builds."""

from __future__ import annotations

import json

from test_benchmarks import DOCUMENTS, QUERIES, beir_folder, run_script  # noqa: F401  (beir_folder: a fixture)


def test_milvus_scifact_compares_each_index_type_class_side_by_side(beir_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "milvus"
    printed = run_script("milvus_scifact.py", str(beir_folder), "--model", str(tiny_model_dir), "--out", str(out),
                         "--latency-queries", "4")
    result = json.loads((out / "results.json").read_text())
    rows = result["rows"]
    assert list(rows) == ["faiss Flat", "milvus FLAT", f"faiss IVF{result['nlist']},SQ8",
                          f"milvus IVF_SQ8 nlist={result['nlist']}"]
    assert rows["milvus FLAT"]["spec"] == "milvus:FLAT" and rows["milvus FLAT"]["hybrid_ndcg@10"] is not None
    assert abs(rows["milvus FLAT"]["dense_ndcg@10"] - rows["faiss Flat"]["dense_ndcg@10"]) < 1e-6  # exact = exact
    assert rows["milvus FLAT"]["hybrid_ndcg@10"] == rows["faiss Flat"]["hybrid_ndcg@10"]
    assert all(row["search_p50_ms"] > 0 and row["retrieve_p50_ms"] > 0 for row in rows.values())
    assert "milvus FLAT vs faiss Flat: nDCG@10" in printed
    assert (out / "faiss-default" / "CURRENT").exists()  # built here when no --index is given


def test_dask_ingest_matches_the_single_process_build(beir_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "dask.json"
    printed = run_script("dask_ingest.py", str(beir_folder), "--documents", "6", "--workers", "2",
                         "--model", str(tiny_model_dir), "--json", str(out))
    result = json.loads(out.read_text())
    assert result["documents"] == 6 and result["chunks_single"] == result["chunks_dask"] >= 6
    assert result["same_chunks"] and result["min_cosine"] >= 0.9999 and not result["failures"]
    assert result["single_seconds"] > 0 and result["dask_seconds"] > 0 and "wall: single process" in printed
