"""The benchmark scripts run end to end on a tiny BEIR folder, so the README's commands keep working.

They use the bundled all-MiniLM-L6-v2 (offline) and LlamaIndex's HuggingFaceEmbedding on it, exactly as
on real data; the data here is eight made-up documents, never the shared datasets.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

DOCUMENTS = {
    "lease": ("Office lease", "The tenant may terminate this lease with ninety days written notice to the landlord."),
    "nda": ("Mutual NDA", "Each party shall keep the other party's confidential information secret for five years."),
    "sla": ("Hosting SLA", "The provider guarantees 99.9 percent monthly uptime and credits fees for outages."),
    "loan": ("Loan agreement", "The borrower repays the principal in twelve monthly instalments with 5% interest."),
    "flu": ("Influenza", "Influenza vaccination each autumn lowers the risk of hospital admission in older adults."),
    "salt": ("Hypertension", "Reducing dietary salt lowers blood pressure in patients with hypertension."),
    "bees": ("Pollinators", "Honey bees pollinate almond orchards; colony losses raise almond prices."),
    "rust": ("Corrosion", "Zinc coatings protect steel bridges from rust by sacrificial corrosion."),
}
QUERIES = {
    "q1": ("how much notice does a tenant need to end the lease", "lease"),
    "q2": ("does less salt reduce blood pressure", "salt"),
    "q3": ("what uptime does the hosting provider guarantee", "sla"),
    "q4": ("how are steel bridges protected from rust", "rust"),
}


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-beir")
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for doc_id, (title, text) in DOCUMENTS.items():
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as queries:
        for qid, (text, _) in QUERIES.items():
            queries.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{qid}\t{doc}\t1" for qid, (_, doc) in QUERIES.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def run_script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_compare_llamaindex_reports_every_pipeline(beir_folder, tmp_path):
    out = tmp_path / "compare.json"
    printed = run_script("compare_llamaindex.py", str(beir_folder), "--json", str(out))
    result = json.loads(out.read_text())
    rows = result["results"]
    assert result["documents"] == len(DOCUMENTS) and result["queries"] == len(QUERIES)
    assert {"ours-fp32", "llamaindex-default", "ours-in-llamaindex", "ours-bf16"} <= set(rows)
    for name in ("ours-fp32", "llamaindex-default", "ours-in-llamaindex"):
        row = rows[name]
        assert row["ndcg@10"] > 0.9, (name, row)  # every query names its document plainly
        assert row["chunks"] >= len(DOCUMENTS) and row["bytes_on_disk"] > 0 and row["embedded_tokens"] > 0
        assert 0 < row["query_p50_ms"] <= row["query_p99_ms"]
    assert rows["ours-fp32"]["chunks"] == rows["ours-in-llamaindex"]["chunks"]
    assert "ratios to llamaindex-default" in printed


def test_scale_reaches_the_recall_target_or_says_which_nprobe(tmp_path):
    out = tmp_path / "scale.json"
    run_script("scale.py", "--sizes", "4000", "--codecs", "SQ8;PQ192x4fs;auto", "--json", str(out))
    rows = json.loads(out.read_text())
    assert [row["spec"].split(",", 1)[-1] for row in rows] == ["Flat", "SQ8", "PQ192x4fs", "PQ192x4fs,Refine(SQ8)"]
    flat = rows[0]
    assert flat["recall@10"] == 1.0 and flat["auto_picks"] and flat["bytes_per_chunk"] > 1500
    for row in rows[1:]:
        assert row["nprobe"] >= 1 and 0 < row["recall@10"] <= 1 and row["bytes_per_chunk"] < flat["bytes_per_chunk"]
    pq, two_level = rows[2], rows[3]
    assert two_level["recall@10"] > pq["recall@10"] and two_level["k_factor"] >= 1
    assert two_level["ram_bytes_per_chunk"] < two_level["bytes_per_chunk"]  # the SQ8 codes stay on disk
    assert two_level["calibrated"]["recall@10"] >= 0.98 and 0 < two_level["calibrated"]["real_query_recall@10"] <= 1


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cuad_span_scores_count_chunks_and_characters_as_legalbench_rag_does():
    cuad = load_benchmark("cuad_spans")
    # One query; its answer is characters 100-200 and 150-250 of contract "a" (merged: 100-250, 150 chars).
    spans = {"q": [("a", 100, 200), ("a", 150, 250)]}
    chunk_spans = {"a": [(0, 120), (120, 240), (240, 400)], "b": [(0, 300)]}
    ranked = [("b", 0, 300), ("a", 120, 240), ("a", 0, 120), ("a", 240, 400)]
    got = cuad.score({"q": ranked}, spans, chunk_spans)
    assert got["recall@1"] == 0 and got["recall@4"] == 1  # the wrong contract comes first
    assert got["precision@4"] == 3 / 4  # three of the four returned chunks touch the answer
    assert got["ceiling_precision@4"] == 3 / 4 and got["chars@4"] == 300 + 120 + 120 + 160
    assert got["char_precision@4"] == (120 + 20 + 10) / 700  # answer characters / returned characters
    assert got["char_recall@4"] == 1.0 and got["char_recall@1"] == 0.0
    assert got["char_recall@8"] == 1.0 and got["char_precision@8"] == got["char_precision@4"]  # only four returned
    assert got["doc_ndcg@10"] < 1  # the right contract is second


def test_encoder_backends_time_every_backend_and_agree_with_torch(beir_folder, tmp_path):
    out = tmp_path / "backends.json"
    printed = run_script("encoder_backends.py", str(beir_folder), "--docs", "8", "--rounds", "1", "--json", str(out))
    rows = json.loads(out.read_text())["results"]
    assert {"torch-fp32", "torch-int8", "onnxruntime-fp32", "onnxruntime-int8", "llamaindex-hf"} <= set(rows)
    assert all(row["tokens_per_s"] > 0 and row["tokens"] == rows["torch-fp32"]["tokens"] for row in rows.values())
    # The same float32 weights through ONNX Runtime and through LlamaIndex give the same vectors;
    # int8 stays close. (Exporting must not leave the torch model in training mode.)
    assert rows["onnxruntime-fp32"]["cosine_min"] > 0.999 and rows["llamaindex-hf"]["cosine_min"] > 0.999
    assert rows["torch-int8"]["cosine_min"] > 0.9 and rows["onnxruntime-int8"]["cosine_min"] > 0.9
    assert "vs fp32" in printed


def test_encoder_runtimes_compare_torch_with_its_exports(beir_folder, tiny_model_dir, tmp_path):
    out = tmp_path / "runtimes.json"
    printed = run_script("encoder_runtimes.py", str(beir_folder), "--model", str(tiny_model_dir), "--out",
                         str(tmp_path / "work"), "--parity-chunks", "8", "--queries", "4", "--rounds", "1",
                         "--oneshot-docs", "8", "--oneshot-runs", "1", "--json", str(out))
    result = json.loads(out.read_text())
    parity = result["parity"]
    assert set(parity) == {"torch", "onnx-fp32", "onnx-int8", "torchscript"}
    assert parity["onnx-fp32"]["cosine_min"] >= 0.99999 and parity["torchscript"]["cosine_min"] >= 0.99999
    assert parity["onnx-fp32"]["query_cosine_min"] >= 0.99999 and 0.9 < parity["onnx-int8"]["cosine_min"] < 1
    assert all(row["tokens_per_s"] > 0 and row["chunks"] == 8 for row in parity.values())
    quality = result["quality"]
    assert quality["onnx-fp32"]["ndcg@10"] == pytest.approx(quality["torch"]["ndcg@10"], abs=1e-4)
    assert quality["torchscript"]["ndcg_diff_vs_torch"] == pytest.approx(0, abs=1e-4)
    assert {"torch", "onnx-fp32", "onnx-int8"} == set(result["latency"])
    assert all(row["queries"] == 4 and row["p99_ms"] >= row["p50_ms"] > 0 for row in result["latency"].values())
    shot = result["one_shot"]
    assert set(shot) == {"torch", "onnx-fp32"} and not any(row["progress_bar_leaked"] for row in shot.values())
    assert "single-query latency" in printed and "one-shot" in printed


def test_gpu_check_fails_fast_and_says_why_without_cuda(tmp_path):
    import time

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--json", str(tmp_path / "gpu.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "CUDA is not available" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - started < 60 and not (tmp_path / "gpu.json").exists()


def test_gpu_check_code_paths_run_on_a_cpu_with_a_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "gpu.json"
    printed = run_script("gpu_check.py", "--device", "cpu", "--model", str(tiny_model_dir), "--texts", "16", "--batch", "4",
                         "--vectors", "2000", "--queries", "20", "--steps", "3", "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert {r["section"] for r in rows} == {"encode", "faiss", "lora"}
    assert [r["variant"] for r in rows if r["section"] == "encode"][:4] == [
        "torch fp32", "torch fp32 + autocast bf16", "torch fp32 + autocast fp16", "torch bf16 weights"]
    measured = [r for r in rows if r["value"] is not None]
    assert all(r["value"] > 0 for r in measured) and any(r["section"] == "lora" for r in measured)
    assert "skipped: faiss-gpu" in printed  # a CPU run never has a GPU index


def test_catalogue_updates_filtered_recall_and_the_daily_batch(tmp_path):
    """A small catalogue on an IVF index that probes one list: narrow filters still find the brute-force top 10,
    and the batch (10% upserted, 1% deleted) is published while this process keeps querying."""
    from deepseek_rag.testing import build_tiny_model

    model = build_tiny_model(tmp_path / "model", max_seq_length=256)  # a product's text is one chunk
    out = tmp_path / "catalogue.json"
    printed = run_script("catalogue_updates.py", "--products", "1500", "--real", "150", "--queries", "20",
                         "--idle-queries", "30", "--model", str(model), "--index-spec", "IVF8,Flat", "--json", str(out))
    result = json.loads(out.read_text())
    filtered, batch = result["filtered"], result["batch"]
    assert result["index_spec"] == "IVF8,Flat"
    for level, share in (("50%", 0.5), ("5%", 0.05), ("0.1%", 0.001)):
        assert 0.5 * share <= filtered["selectivity"][level] <= 2 * share, (level, filtered["selectivity"])
        assert filtered["recall@10"][level] >= 0.99, (level, filtered["recall@10"])
    assert batch["upserts"] == 150 and batch["deletes"] == 15 and batch["version"] == 2
    assert batch["upserts_per_s"] > 0 and batch["queries"]["during batch"]["queries"] > 0
    assert "p99 during the batch / idle before" in printed


def test_chinese_lexical_reports_every_variant_and_both_build_times(tiny_model_dir, tmp_path):
    """On a made-up Chinese legal folder: every variant in the table, chosen on dev, and the two builds timed."""
    folder = tmp_path / "zh-beir"
    (folder / "qrels").mkdir(parents=True)
    docs = {
        "d1": "承租人未经出租人同意转租的，出租人可以解除合同。",
        "d2": "当事人一方有确切证据证明对方经营状况严重恶化的，可以行使不安抗辩权，中止履行。",
        "d3": "行为人没有代理权，相对人有理由相信行为人有代理权的，构成表见代理。",
        "d4": "租赁期限不得超过二十年。超过二十年的，超过部分无效。",
        "d5": "借款人应当按照约定的期限返还借款，并支付利息。",
    }
    queries = {"q1": ("出租人可以解除合同吗", "d1"), "q2": ("什么是不安抗辩权", "d2"), "q3": ("表见代理的构成", "d3"),
               "q4": ("租赁期限最长多少年", "d4"), "q5": ("借款到期不还怎么办", "d5"),
               "q6": ("请问出租人同意转租吗", "d1"), "q7": ("请问借款的利息怎么支付", "d5"), "q8": ("请问二十年的租赁期限", "d4")}
    areas = {"d1": "租赁", "d2": "合同", "d3": "代理", "d4": "租赁", "d5": "借款"}  # the field prior's key: title
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for doc_id, text in docs.items():
            corpus.write(json.dumps({"_id": doc_id, "title": areas[doc_id], "text": text}, ensure_ascii=False) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for qid, (text, _) in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split, qids in (("dev", ["q1", "q2", "q3"]), ("test", ["q4", "q5"]), ("train", ["q6", "q7", "q8"])):
        rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{queries[q][1]}\t1" for q in qids]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    terms = tmp_path / "legal_terms.txt"
    terms.write_text("不安抗辩权\n表见代理\n", encoding="utf-8")
    out = tmp_path / "out"
    printed = run_script("chinese_lexical.py", str(folder), "--out", str(out), "--model", str(tiny_model_dir),
                         "--user-dictionary", str(terms), "--field", "title")
    result = json.loads((out / "chinese_lexical.json").read_text())
    variants = result["variants"]
    assert {"jieba search mode", "chars+search: bigrams and jieba search words together"} <= set(variants)
    assert any("RM3" in label for label in variants) and any("user dictionary" in label for label in variants)
    assert any("term recall weights" in label for label in variants) and any("fitted term" in label for label in variants)
    assert any(label.startswith("RRF") for label in variants) and any("unseen-term defaults" in label for label in variants)
    assert any("user dictionary" in label and "fitted with it" in label for label in variants)
    library = [label for label in variants if "query model" in label]  # fit_query_model, attached, via the retriever
    assert len(library) == 5 and any("field prior on 'title' (weight 0.5)" in label for label in library)
    assert result["query_model"]["field"] == "title" and result["query_model"]["pairs"] == 3
    fitted = result["fitted_term_weights"]  # learned on the train split's questions, positive and finite
    assert "转租" in dict(fitted["highest"] + fitted["lowest"]) or len(fitted["highest"]) == 20
    assert all(0 < w < float("inf") for _, w in fitted["highest"] + fitted["lowest"])
    assert all(0 <= row["dev"] <= 1 and 0 <= row["test"] <= 1 for row in variants.values())
    assert result["best_by_dev"]["variant"] in variants
    rows = result["build"]["rows"]
    assert rows["lexical-only (--dense off)"]["documents"] == rows["dense + sparse (default)"]["documents"] == 5
    assert "dense + sparse / lexical-only build time" in printed


def test_term_recall_weights_lower_question_words_that_answers_never_repeat():
    from deepseek_rag.sparse import term_weights as learn

    pairs = [(["想问", "血压"], ["血压", "降压药"]), (["想问", "胃炎"], ["胃炎", "奥美拉唑"]), (["血压", "头晕"], ["血压"])]
    weights = learn.term_recall_weights(pairs, alpha=1.0, gamma=1.0)
    assert weights.of("想问") < 1.0 < weights.of("血压") and weights.of("没见过") == 1.0
    assert weights.apply({"想问": 2.0, "血压": 1.0}) == {"想问": 2 * weights.of("想问"), "血压": weights.of("血压")}


def test_focus_rule_leaves_short_documents_ranked_as_before(beir_folder, tmp_path):
    """No query names a document, and one abstract could not fill 10 chunks anyway: the plain ranking."""
    out = tmp_path / "focus.json"
    printed = run_script("focus_rule.py", str(beir_folder), "--json", str(out))
    result = json.loads(out.read_text())
    auto, off = result["results"]["auto (default)"], result["results"]["off (focus_documents=0)"]
    assert result["rankings_differ"] == 0 and auto["ndcg@10"] == off["ndcg@10"] > 0.9
    assert "title" not in auto["decisions"] and sum(auto["decisions"].values()) == 4
    assert "queries whose chunk ranking differs: 0" in printed


def test_cuad_split_rule_is_deterministic_and_holds_out_a_quarter():
    cuad = load_benchmark("cuad_spans")
    ids = [f"contract-{i}" for i in range(2000)]
    share = sum(map(cuad.held_out, ids)) / len(ids)
    assert 0.22 < share < 0.28 and [cuad.held_out(i) for i in ids] == [cuad.held_out(i) for i in ids]
