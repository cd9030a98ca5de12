"""A/B arms: sticky routing, live weights, feedback and the report, hot swaps refused when broken, offline compare."""

from __future__ import annotations

import json
import random

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError
from deepseek_rag.cli import cli
from deepseek_rag.comparison import paired_comparison
from deepseek_rag.evaluation import per_query
from deepseek_rag.serve import ServeSettings
from deepseek_rag.serve.arms import ArmRouter, ArmSettings, ExperimentSettings
from deepseek_rag.serve.experiments import sample_size, two_proportion_test
from deepseek_rag.testing import build_tiny_model

from serve_helpers import running_server

KEY = "ab-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def experiment(weights=(90, 10), **options) -> ExperimentSettings:
    return ExperimentSettings(arms=[ArmSettings(name="base", index="/x/base", weight=weights[0], default=True),
                                    ArmSettings(name="tuned", index="/x/tuned", weight=weights[1])], **options)


def test_routing_is_sticky_split_by_weight_and_growth_only_adds_users():
    router = ArmRouter(experiment((90, 10)))
    users = [f"user-{i}" for i in range(20_000)]
    first = {u: router.choose(u) for u in users}
    assert {u: router.choose(u) for u in users} == first  # sticky
    share = sum(a == "tuned" for a in first.values()) / len(users)
    assert abs(share - 0.10) < 0.01
    router.set_weights({"tuned": 50, "base": 50})
    second = {u: router.choose(u) for u in users}
    assert abs(sum(a == "tuned" for a in second.values()) / len(users) - 0.5) < 0.02
    assert all(second[u] == "tuned" for u in users if first[u] == "tuned")  # nobody leaves the growing arm
    assert router.choose(None) == "base" and router.choose("anyone", forced="tuned") == "tuned"
    router.promote("tuned")
    assert router.default == "tuned" and {router.choose(u) for u in users[:500]} == {"tuned"}
    assert ArmRouter(experiment((50, 50), salt="other")).choose("user-1") in ("base", "tuned")


def test_bad_configs_and_bad_arm_names_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="sum to 0"):
        experiment((0, 0))
    with pytest.raises(InvalidInputError, match="weight=-1"):
        experiment((-1, 5))
    with pytest.raises(InvalidInputError, match="only one arm can be the default"):
        ExperimentSettings(arms=[ArmSettings(name="a", index="/a", default=True), ArmSettings(name="b", index="/b", default=True)])
    with pytest.raises(InvalidInputError, match="unique"):
        ExperimentSettings(arms=[ArmSettings(name="a", index="/a"), ArmSettings(name="a", index="/b")])
    with pytest.raises(InvalidInputError, match="shadow = 'c' is not an arm"):
        experiment(shadow="c")
    router = ArmRouter(experiment())
    with pytest.raises(InvalidInputError, match="X-Arm: 'nope' is not an arm"):
        router.choose("u", forced="nope")
    with pytest.raises(InvalidInputError, match="cannot promote 'nope'"):
        router.promote("nope")
    with pytest.raises(InvalidInputError, match="sum to 0"):
        router.set_weights({"base": 0, "tuned": 0})
    config = tmp_path / "serve.toml"
    config.write_text('salt = "s"\nnote = "extra keys are fine"\n[[arms]]\nname = "base"\nindex = "indexes/base"\nweight = 1\n'
                      'owner = "team"\n')
    loaded = ExperimentSettings.from_toml(config)
    assert loaded.arms[0].index == str((tmp_path / "indexes" / "base").resolve()) and loaded.default_arm == "base"
    config.write_text("[[arms]\nname=")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        ExperimentSettings.from_toml(config)


def test_two_proportion_test_and_sample_size_match_textbook_values():
    result = two_proportion_test(40, 100, 55, 100)  # 40% vs 55%
    assert result["difference"] == pytest.approx(0.15)
    pooled = (95 / 200) * (105 / 200) * (2 / 100)
    from scipy.stats import norm

    assert result["p_value"] == pytest.approx(2 * norm.sf(0.15 / pooled ** 0.5), abs=1e-5)
    assert result["ci95"][0] < 0.15 < result["ci95"][1]
    assert 1560 <= sample_size(0.5, 0.05) <= 1570  # the classic ~1,565 per arm for 50% → 55%
    assert two_proportion_test(1, 0, 1, 10)["p_value"] is None


def test_our_metrics_agree_with_pytrec_eval():
    import pytrec_eval

    rng = random.Random(3)
    qrels = {f"q{i}": {f"d{j}": rng.choice([1, 1, 2]) for j in rng.sample(range(40), rng.randint(1, 5))} for i in range(60)}
    run = {q: {f"d{j}": rng.random() for j in rng.sample(range(40), 30)} for q in qrels}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"}).evaluate(run)
    for metric, key in (("ndcg@10", "ndcg_cut_10"), ("recall@100", "recall_100")):
        ours = per_query(run, qrels, metric)
        assert max(abs(ours[q] - theirs[q][key]) for q in qrels) < 1e-6, metric


def test_paired_comparison_reports_difference_ci_and_tests():
    rng = np.random.default_rng(0)
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(200)}
    run_a = {q: {f"d{i}": 1.0, "x": 2.0 if rng.random() < 0.5 else 0.0} for i, q in enumerate(qrels)}
    run_b = {q: {f"d{i}": 1.0, "x": 2.0 if rng.random() < 0.2 else 0.0} for i, q in enumerate(qrels)}
    row = paired_comparison(run_a, run_b, qrels, ["mrr@10"])["metrics"]["mrr@10"]
    assert row["difference"] > 0.1 and row["ci95"][0] > 0 and row["p_randomization"] < 0.01 and row["p_t_test"] < 0.01
    assert row["wins"] + row["ties"] + row["losses"] == pytest.approx(1.0)
    same = paired_comparison(run_a, run_a, qrels, ["mrr@10"])["metrics"]["mrr@10"]
    assert same["difference"] == 0 and same["p_randomization"] == 1.0


@pytest.fixture(scope="module")
def arms(tiny_model_dir, tmp_path_factory):
    """Two arms of one corpus with different encoders — 32- and 48-dimensional — served side by side."""
    root = tmp_path_factory.mktemp("arms")
    wide = build_tiny_model(root / "wide-model", hidden_size=48, seed=5)
    docs = [Document(f"d{i}", f"Clause {i}: the tenant repairs the roof and pays rent on time.") for i in range(8)]
    for name, model in (("base", tiny_model_dir), ("tuned", wide)):
        DocumentIndex.build(docs, DualEncoder(model=str(model))).save(root / name)
    config = root / "serve.toml"
    config.write_text('salt = "test"\nshadow = "shadow"\nmin_effect = 0.1\n'
                      '[[arms]]\nname = "base"\nindex = "base"\nweight = 90\ndefault = true\n'
                      '[[arms]]\nname = "tuned"\nindex = "tuned"\nweight = 10\n'
                      '[[arms]]\nname = "shadow"\nindex = "tuned"\nweight = 0\n')
    settings = ServeSettings(experiment=ExperimentSettings.from_toml(config), api_key=KEY, watch_s=0.1)
    with running_server(settings) as url:
        yield url, root, wide


def test_each_arm_answers_with_its_own_encoder_and_names_itself(arms):
    url, _, _ = arms
    with httpx.Client(base_url=url, timeout=30) as client:
        seen = {}
        for i in range(60):
            body = client.post("/v1/retrieve", json={"query": "roof repairs"}, headers={"X-User-Id": f"u{i}"}).json()
            seen.setdefault(body["arm"], set()).add(body["index_version"])
            again = client.post("/v1/retrieve", json={"query": "rent", "user": f"u{i}"}).json()
            assert again["arm"] == body["arm"]  # header or body field: the same user, the same arm
        assert set(seen) == {"base", "tuned"}
        forced = client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-Arm": "tuned"}).json()
        assert forced["arm"] == "tuned" and forced["hits"]
        unknown = client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-Arm": "nope"})
        assert unknown.status_code == 422 and "not an arm" in unknown.text
        assert client.post("/v1/retrieve", json={"query": "roof"}).json()["arm"] == "base"  # anonymous → default
        metrics = client.get("/metrics").text
        assert 'deepseek_rag_requests_total{arm="tuned",route="/v1/retrieve",status="200"}' in metrics
        assert 'deepseek_rag_index_chunks{arm="tuned"}' in metrics


def test_openai_model_names_an_arm_or_lets_the_router_choose(arms):
    url, _, _ = arms
    chat = {"messages": [{"role": "user", "content": "Who repairs the roof?"}]}
    with httpx.Client(base_url=url, timeout=30) as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["deepseek-rag", "base", "tuned", "shadow"]
        named = client.post("/v1/chat/completions", json={**chat, "model": "tuned"}).json()
        assert named["arm"] == "tuned" and named["sources"]
        vectors = client.post("/v1/embeddings", json={"input": "roof", "model": "tuned"}).json()
        assert vectors["arm"] == "tuned" and len(vectors["data"][0]["embedding"]) == 48  # the tuned arm's encoder
        for i in range(30):  # routed: the same arm as /v1/retrieve gives the same user
            retrieved = client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-User-Id": f"chat{i}"}).json()
            answered = client.post("/v1/chat/completions", json={**chat, "model": "deepseek-rag", "user": f"chat{i}"})
            assert answered.json()["arm"] == retrieved["arm"]
        reply = client.post("/v1/feedback", json={"request_id": named["request_id"], "signal": "helpful"})
        assert reply.json() == {"recorded": True, "arm": "tuned"}  # chat answers take feedback like /v1/retrieve
        unknown = client.post("/v1/chat/completions", json={**chat, "model": "gpt-4o"})
        assert unknown.status_code == 422 and unknown.json()["detail"]["errors"][0]["field"] == "model"
        assert "'gpt-4o' is not served here" in unknown.text and "'deepseek-rag'" in unknown.text


def test_feedback_and_the_online_report(arms):
    url, _, _ = arms
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(40):
            arm = "tuned" if i % 2 else "base"
            body = client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-Arm": arm}).json()
            signal = "helpful" if (arm == "tuned" or i % 4 == 0) else "unhelpful"
            reply = client.post("/v1/feedback", json={"request_id": body["request_id"], "signal": signal})
            assert reply.json() == {"recorded": True, "arm": arm}
        assert client.post("/v1/feedback", json={"request_id": "f" * 32, "signal": "click"}).status_code == 404
        assert client.post("/v1/feedback", json={"request_id": "x", "signal": "meh"}).status_code == 422
        report = client.get("/v1/experiments").json()
        tuned = report["arms"]["tuned"]
        assert tuned["helpful_share"] == 1.0 and report["arms"]["base"]["helpful_share"] == 0.5
        assert tuned["vs_default"]["difference"] == 0.5 and tuned["vs_default"]["p_value"] < 0.01
        assert report["arms"]["shadow"]["shadow_requests"] > 0  # the shadow got copies, answered nothing
        assert report["rated_per_arm_needed"] > 0
    result = CliRunner().invoke(cli, ["ab-report", "--url", url])
    assert result.exit_code == 0 and "tuned" in result.output and "p=" in result.output


def test_weights_promotion_and_a_refused_hot_swap(arms):
    url, root, wide = arms
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.put("/v1/admin/arms", json={"weights": {"tuned": 50}}).status_code == 401
        moved = client.put("/v1/admin/arms", json={"weights": {"tuned": 50}}, headers=AUTH).json()
        assert moved["weights"]["tuned"] == 50
        assert client.post("/v1/admin/promote", json={"arm": "nope"}, headers=AUTH).status_code == 422
        before = client.get("/v1/index", headers={"X-Arm": "tuned"}).json()["version"]
        # another process republishes the tuned arm's directory with an encoder of another dimension
        other = build_tiny_model(root / "other-model", hidden_size=16, seed=9)
        DocumentIndex.build([Document("z", "Other text.")], DualEncoder(model=str(other))).save(root / "tuned", overwrite=True)
        refused = client.post("/v1/admin/reload", headers=AUTH)
        assert refused.status_code == 409 and "tuned" in refused.json()["detail"]["message"]
        still = client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-Arm": "tuned"})
        assert still.status_code == 200 and still.json()["index_version"] == before  # the old version keeps serving
        promoted = client.post("/v1/admin/promote", json={"arm": "tuned"}, headers=AUTH).json()
        assert promoted["default"] == "tuned" and promoted["weights"] == {"base": 0.0, "tuned": 100.0}
        assert client.post("/v1/retrieve", json={"query": "roof"}, headers={"X-User-Id": "anyone"}).json()["arm"] == "tuned"


def test_compare_command_on_a_tiny_beir_folder(tiny_model_dir, tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    texts = ["the tenant repairs the roof", "payment is due in thirty days", "governed by the laws of new york"]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                                 for i, t in enumerate(texts)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    from deepseek_rag.ingest.loaders import load_beir_corpus

    for name in ("a", "b"):
        DocumentIndex.build(load_beir_corpus(folder), DualEncoder(model=str(tiny_model_dir))).save(tmp_path / name)
    result = CliRunner().invoke(cli, ["compare", "--data", str(folder), str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["metrics"]["ndcg@10"]
    assert row["difference"] == 0 and row["ties"] == 1.0 and row["p_randomization"] == 1.0
    bad = CliRunner().invoke(cli, ["compare", "--data", str(folder), str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "map"])
    assert bad.exit_code == 1 and "metric 'map'" in bad.output
