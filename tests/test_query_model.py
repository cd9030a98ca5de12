"""Learned query models for the BM25 side (``sparse/query_model.py``): term weights fitted on training pairs lower
the patients' filler words BM25 over-weighs, a field prior ranks the likely department's answer first, and an
index records the model it uses — a changed, missing or mismatched model is a clear error, never other scores.

The corpus is medical Q&A of our own making: specific answers in two departments, and generic answers made of
the filler words the questions are full of (想问, 一下, 怎么办), which plain BM25 ranks first."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError, SparseConfig
from deepseek_rag.cli import cli
from deepseek_rag.sparse.query_model import QueryModel, fit_query_model, load_query_model

DIGESTIVE = ["胃疼", "胃胀", "反酸", "腹泻", "便秘", "打嗝", "恶心", "胃炎", "口臭", "肠鸣"]
CARDIAC = ["血压", "心慌", "胸闷", "心悸", "早搏", "头晕", "气短", "心律", "血脂", "水肿"]
CHATTER = ["最近工作忙", "前几天喝了酒", "我妈今年六十", "孩子刚上学", "天气变冷以后"]
FILLER = ["我想问一下", "请问", "想咨询", "医生您好", "麻烦问问", "求助"]
TAILS = ["该怎么办呢", "怎么回事", "要怎么处理", "严重吗"]
QUESTION = "我想问一下，熬夜加班后，胃胀该怎么办呢"  # chatter no training question had


def corpus() -> list[Document]:
    docs = []
    for department, symptoms in (("消化科", DIGESTIVE), ("心血管科", CARDIAC)):
        for symptom in symptoms:
            docs.append(Document(symptom, f"{symptom}多与饮食和作息有关，{symptom}明显时建议少量多餐，规律作息，"
                                          f"避免辛辣刺激，必要时来{department}复诊检查。",
                                 {"title": department, "department": department}))
    for g, department in enumerate(["消化科", "心血管科"] * 3):  # answers made of the questions' filler words
        docs.append(Document(f"generic-{g}", f"{FILLER[g]}{TAILS[g % 4]}？{FILLER[(g + 1) % 6]}{TAILS[(g + 1) % 4]}？"
                                             "这类问题请线上咨询", {"title": department, "department": department}))
    return docs


def training_pairs() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    queries, qrels = {}, {}
    for symptoms in (DIGESTIVE, CARDIAC):
        for s, symptom in enumerate(symptoms):
            for c in range(4):
                qid = f"q-{symptom}-{c}"
                queries[qid] = f"{FILLER[(s + c) % 6]}，{CHATTER[(s + 2 * c) % 5]}，{symptom}{TAILS[(s + 3 * c) % 4]}"
                qrels[qid] = {symptom: 1}
    return queries, qrels


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def index(encoder):
    return DocumentIndex.build(corpus(), encoder, dense="off", progress=False)


@pytest.fixture(scope="module")
def model(index):
    queries, qrels = training_pairs()
    return fit_query_model(index, queries, qrels, field="title")


def top(index, question: str, k: int = 1) -> list[str]:
    return [d.doc_id for d in index.as_retriever(top_k=k, mode="sparse").retrieve_documents(question)]


def test_term_weights_lower_the_filler_words_and_rank_the_answer_first(index, model, tmp_path):
    assert top(index, QUESTION)[0].startswith("generic-")  # plain BM25: the filler words win
    weights = model.term_weights
    assert weights.of("想问") < 0.5 * weights.of("胃胀") and weights.of("么办") < 0.5 * weights.of("胃胀")
    path = tmp_path / "model.json"
    model.save(path)
    tuned = index.with_sparse(SparseConfig(query_model=str(path)))
    assert top(tuned, QUESTION) == ["胃胀"]


def test_the_field_prior_ranks_the_likely_departments_answer_first(encoder, tmp_path):
    twins = [Document("twin-cardiac", "乏力出汗，注意休息，清淡饮食", {"title": "答复", "department": "心血管科"}),
             Document("twin-digestive", "乏力出汗，注意休息，清淡饮食", {"title": "答复", "department": "消化科"})]
    both = DocumentIndex.build(corpus() + twins, encoder, dense="off", progress=False)
    question = "乏力出汗，还反酸打嗝"
    assert top(both, question, 2) == ["twin-cardiac", "twin-digestive"]  # equal BM25: the lower chunk id first
    queries, qrels = training_pairs()
    prior_only = fit_query_model(both, queries, qrels, field="department", term_weights=False)
    assert prior_only.term_weights is None and prior_only.field_prior.values == ["心血管科", "消化科"]
    log_probs = dict(zip(prior_only.field_prior.values,
                         prior_only.field_prior.log_probs(both.snapshot().sparse.analyze_query(question))))
    assert log_probs["消化科"] > log_probs["心血管科"]
    prior_only.save(tmp_path / "prior.json")
    with_prior = both.with_sparse(SparseConfig(query_model=str(tmp_path / "prior.json")))
    assert top(with_prior, question, 2) == ["twin-digestive", "twin-cardiac"]
    hits = with_prior.as_retriever(top_k=2, mode="sparse", filters={"department": "心血管科"}).retrieve_documents(question)
    assert [d.doc_id for d in hits][0] == "twin-cardiac"  # filters still apply before the prior re-scores


def test_the_cli_fits_attaches_and_publishes_a_version_that_searches_use(tmp_path, tiny_model_dir):
    data = tmp_path / "medqa"
    (data / "qrels").mkdir(parents=True)
    docs = corpus()
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "title": d.metadata["title"], "text": d.text},
                                                          ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    queries, qrels = training_pairs()
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                                                for q, t in queries.items()), encoding="utf-8")
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, judged in qrels.items() for d in judged), encoding="utf-8")
    runner = CliRunner()
    out = tmp_path / "med.idx"
    built = runner.invoke(cli, ["index", str(data / "corpus.jsonl"), "--out", str(out), "--dense", "off",
                                "--model", str(tiny_model_dir)])
    assert built.exit_code == 0, built.output
    question = QUESTION
    before = json.loads(runner.invoke(cli, ["query", str(out), question, "--top-k", "1", "--json"]).stdout)
    assert before["hits"][0]["doc_id"].startswith("generic-")

    model_file = tmp_path / "med.query-model.json"
    fitted = runner.invoke(cli, ["fit-sparse", str(out), "--beir", str(data), "--field", "title", "--out", str(model_file)])
    assert fitted.exit_code == 0, fitted.output
    assert "term weights and field prior on 'title'" in fitted.stdout and "(version 2)" in fitted.stdout
    after = json.loads(runner.invoke(cli, ["query", str(out), question, "--top-k", "1", "--json"]).stdout)
    assert after["hits"][0]["doc_id"] == "胃胀"
    info = json.loads(runner.invoke(cli, ["info", str(out)]).stdout)
    assert info["version"] == 2 and info["settings"]["sparse"]["query_model"] == str(model_file)
    assert len(info["settings"]["sparse"]["query_model_checksum"]) == 64

    model_file.write_text(model_file.read_text(encoding="utf-8").replace('"fitted_on": {', '"fitted_on": {"edited": 1, '),
                          encoding="utf-8")
    changed = runner.invoke(cli, ["query", str(out), question])
    assert changed.exit_code == 1 and "changed since the index recorded it" in changed.output
    assert "Traceback" not in changed.output
    model_file.unlink()
    missing = runner.invoke(cli, ["query", str(out), question])
    assert missing.exit_code == 1 and "does not exist" in missing.output

    refused = runner.invoke(cli, ["fit-sparse", str(out), "--beir", str(data), "--no-term-weights", "--out", str(model_file)])
    assert refused.exit_code == 2 and "--field" in refused.output


def test_a_model_fitted_under_other_bm25_settings_is_refused(index, model, tmp_path):
    path = tmp_path / "model.json"
    model.save(path)
    with pytest.raises(InvalidInputError, match="other BM25 settings"):
        index.with_sparse(SparseConfig(k1=0.9, query_model=str(path))).search_sparse(["胃胀"], 1)
    with pytest.raises(InvalidInputError, match="other BM25 settings"):
        load_query_model(path, analysis={**model.analysis, "chinese": "search"})


def test_bad_training_input_names_the_problem(index, tmp_path):
    queries, qrels = training_pairs()
    with pytest.raises(InvalidInputError, match="none of the training judgements"):
        fit_query_model(index, queries, {q: {"no-such-doc": 1} for q in qrels})
    with pytest.raises(InvalidInputError, match="not a text value"):
        fit_query_model(index, queries, qrels, field="price", term_weights=False)
    with pytest.raises(InvalidInputError, match="at least two"):
        fit_query_model(index, queries, qrels, field="language", term_weights=False)  # every answer: "zh"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not JSON"):
        load_query_model(broken)
    broken.write_text(json.dumps({"format_version": 1, "analysis": {}}), encoding="utf-8")
    with pytest.raises(InvalidInputError, match="needs term weights, a field prior"):
        load_query_model(broken)


def test_the_service_ranks_with_the_attached_model_and_swaps_to_it_when_published(model, tiny_model_dir, tmp_path):
    """A running server on 127.0.0.1 picks up the version that attaches the model (hot swap), and serves its ranking."""
    import httpx

    from deepseek_rag.serve import ServeSettings
    from serve_helpers import running_server

    folder = tmp_path / "served.idx"
    DocumentIndex.build(corpus(), DualEncoder(model=str(tiny_model_dir)), dense="off", progress=False).save(folder)
    settings = ServeSettings(index=str(folder), model=str(tiny_model_dir), watch_s=0.1, timeout_s=20)
    body = {"query": QUESTION, "top_k": 1, "level": "document"}
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/retrieve", json=body).json()["hits"][0]["doc_id"].startswith("generic-")
        path = tmp_path / "model.json"
        model.save(path)
        writer = DocumentIndex.load(folder)
        writer.set_query_model(str(path))
        writer.save()
        writer.close()
        for _ in range(100):  # the watcher swaps within ~0.1 s
            answer = client.post("/v1/retrieve", json=body).json()
            if answer["index_version"] == 2:
                break
            time.sleep(0.1)
        assert answer["index_version"] == 2 and answer["hits"][0]["doc_id"] == "胃胀"


def test_the_prior_reads_the_same_values_from_a_published_segments_columns_as_from_its_chunks(index, tmp_path):
    import numpy as np

    index.save(tmp_path / "published.idx")
    published = DocumentIndex.load(tmp_path / "published.idx", index.encoder, writable=False)
    ids = np.unique(np.concatenate([published.snapshot().search_sparse(["胃胀 血压"], 30)[1][0], [10**9]]))
    ids = ids[ids >= 0]
    from_columns = published.snapshot().text_values("department", ids)
    from_chunks = index.snapshot().text_values("department", ids)
    assert from_columns == from_chunks and from_columns[-1] is None  # an id no segment holds
    assert set(from_columns[:-1]) == {"消化科", "心血管科"}
    assert published.snapshot().text_values("price", ids[:3]) == [None, None, None]
