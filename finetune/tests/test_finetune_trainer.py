"""End-to-end training on a tiny random-init BERT: a few steps each, offline, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepseek_rag import DualEncoder
from deepseek_rag.errors import EncoderMismatchError, InvalidInputError
from deepseek_rag_finetune import FinetuneConfig, Trainer, export_merged_model, finetune
from deepseek_rag_finetune.pairs import split_dev

from finetune_toy import toy_pairs

TEXTS = ["what about alpha", "alpha report: the alpha team wrote about alpha matters", "what about zulu"]


def config(model, **overrides) -> FinetuneConfig:
    base = dict(model=str(model), batch_size=8, lr=5e-3, max_steps=6, warmup_ratio=0.0, lora_r=4, lora_alpha=8,
                dev_fraction=0.2, dev_pool=50, patience=None, progress=False, mlflow=False, seed=0)
    return FinetuneConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def shared_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shared-adapter")
    result = finetune(toy_pairs(), out, config(tiny_model_dir, projection_dim=16, hard_negatives=1))
    return out, result


@pytest.fixture(scope="module")
def asymmetric_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("asym-adapter")
    return out, finetune(toy_pairs(), out, config(tiny_model_dir, adapter_mode="asymmetric"))


def test_loss_decreases_on_a_learnable_task(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, max_steps=15, dev_fraction=0.0, lora_dropout=0.0)
    result = finetune(toy_pairs(), tmp_path, cfg)
    assert result.steps == 15
    assert np.mean(result.losses[-3:]) < 0.8 * np.mean(result.losses[:3])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 16))


def test_shared_adapter_folder_loads_and_changes_vectors(shared_run, tiny_model_dir):
    out, result = shared_run
    manifest = json.loads((out / "deepseek_rag_adapter.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["sides"] == {"query": "shared", "document": "shared"}
    assert manifest["projection"] == {"file": "projection.safetensors"}
    assert (out / "shared" / "adapter_config.json").is_file()
    base = DualEncoder(model=str(tiny_model_dir))
    assert manifest["base_model_fingerprint"] == base.base_fingerprint
    tuned = DualEncoder(model=str(tiny_model_dir), adapter=str(out))
    vectors = tuned.encode_queries(TEXTS)
    assert vectors.shape == (3, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert not np.allclose(tuned.encode_documents(TEXTS)[:, :16], base.encode_documents(TEXTS)[:, :16], atol=1e-3)
    # shared: one adapter, so the two sides read a text the same way (no prefixes here)
    assert np.allclose(tuned.encode_queries(TEXTS), tuned.encode_documents(TEXTS), atol=1e-5)


def test_training_report(shared_run):
    out, result = shared_run
    report = json.loads((out / "training_report.json").read_text())
    assert report["dev_before"] and report["dev_after"] and "ndcg@10" in report["dev_after"]
    assert 0 < report["trainable_share"] < 1 and report["trainable_parameters"] > 0
    assert 0 < report["adapter_bytes"] < report["base_model_bytes"]
    assert FinetuneConfig.from_dict(report["config"]).projection_dim == 16


def test_asymmetric_sides_differ(asymmetric_run, tiny_model_dir):
    out, _ = asymmetric_run
    manifest = json.loads((out / "deepseek_rag_adapter.json").read_text())
    assert manifest["sides"] == {"query": "query", "document": "document"}
    assert (out / "query" / "adapter_config.json").is_file() and (out / "document" / "adapter_config.json").is_file()
    base = DualEncoder(model=str(tiny_model_dir))
    tuned = DualEncoder(model=str(tiny_model_dir), adapter=str(out))
    q, d = tuned.encode_queries(TEXTS), tuned.encode_documents(TEXTS)
    assert not np.allclose(q, d, atol=1e-3)  # the same text reads differently per side
    assert not np.allclose(q, base.encode_queries(TEXTS), atol=1e-3)
    assert not np.allclose(d, base.encode_documents(TEXTS), atol=1e-3)


def test_export_gives_identical_vectors(shared_run, asymmetric_run, tiny_model_dir, tmp_path):
    out, _ = shared_run
    merged = export_merged_model(out, tmp_path / "merged", model=str(tiny_model_dir))
    assert (merged / "2_Dense" / "config.json").is_file() and (merged / "modules.json").is_file()
    with_adapter = DualEncoder(model=str(tiny_model_dir), adapter=str(out), dtype="float32")
    plain = DualEncoder(model=str(merged), dtype="float32")
    assert plain.dim == 16
    assert np.allclose(plain.encode_documents(TEXTS), with_adapter.encode_documents(TEXTS), atol=1e-5)
    assert np.allclose(plain.encode_queries(TEXTS), with_adapter.encode_queries(TEXTS), atol=1e-5)

    asym, _ = asymmetric_run
    with pytest.raises(InvalidInputError, match="--side"):
        export_merged_model(asym, tmp_path / "asym", model=str(tiny_model_dir))
    query_model = export_merged_model(asym, tmp_path / "asym-q", model=str(tiny_model_dir), side="query")
    expected = DualEncoder(model=str(tiny_model_dir), adapter=str(asym), dtype="float32").encode_queries(TEXTS)
    exported = DualEncoder(model=str(query_model), dtype="float32").encode_queries(TEXTS)
    assert np.allclose(exported, expected, atol=1e-5)


def test_adapter_on_another_base_model_is_refused(shared_run, other_tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from deepseek_rag.cli import cli

    out, _ = shared_run
    with pytest.raises(EncoderMismatchError, match="trained on base model"):
        DualEncoder(model=str(other_tiny_model_dir), adapter=str(out))
    (tmp_path / "doc.txt").write_text("alpha report about alpha.")
    result = CliRunner().invoke(cli, ["index", str(tmp_path / "doc.txt"), "--out", str(tmp_path / "idx"),
                                      "--model", str(other_tiny_model_dir), "--adapter", str(out)])
    assert result.exit_code == 1 and "trained on base model" in result.output and "Traceback" not in result.output


def test_checkpoint_and_resume_continue_from_the_step(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, max_steps=4, save_every=2, dev_fraction=0.0, keep_checkpoints=5)
    full = finetune(toy_pairs(), tmp_path / "full", cfg)
    step2 = tmp_path / "full" / "checkpoints" / "step-2"
    assert (step2 / "trainer_state.pt").is_file() and (step2 / "adapter" / "deepseek_rag_adapter.json").is_file()
    resumed = finetune(toy_pairs(), tmp_path / "resumed", cfg, resume_from=step2)
    assert (resumed.start_step, resumed.steps) == (2, 4)
    assert resumed.losses == pytest.approx(full.losses[2:], rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "shared" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "shared" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # a run folder resumes from its latest checkpoint
    assert finetune(toy_pairs(), tmp_path / "again", cfg, resume_from=tmp_path / "full").start_step == 4


def test_resume_from_missing_checkpoint(tiny_model_dir, tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        Trainer(config(tiny_model_dir), toy_pairs(), [], tmp_path / "out", resume_from=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no checkpoint"):
        Trainer(config(tiny_model_dir), toy_pairs(), [], tmp_path / "out", resume_from=tmp_path / "empty")


def test_fewer_pairs_than_a_batch(tiny_model_dir, tmp_path):
    train, _ = split_dev(toy_pairs()[:5], 0.0)
    with pytest.raises(InvalidInputError, match="lower --batch-size"):
        Trainer(config(tiny_model_dir), train, [], tmp_path).train()


def test_margin_loss_and_symmetric_infonce_train(tiny_model_dir, tmp_path):
    for name, extra in (("margin", {"loss": "margin"}), ("sym", {"symmetric": True, "grad_accumulation": 2})):
        result = finetune(toy_pairs(), tmp_path / name, config(tiny_model_dir, max_steps=2, dev_fraction=0.0, **extra))
        assert result.steps == 2 and all(np.isfinite(result.losses))


def test_query_only_adapter_keeps_document_vectors(tiny_model_dir, tmp_path):
    finetune(toy_pairs(), tmp_path, config(tiny_model_dir, adapter_mode="query", max_steps=3))
    manifest = json.loads((tmp_path / "deepseek_rag_adapter.json").read_text())
    assert manifest["sides"] == {"query": "query", "document": None} and not (tmp_path / "document").exists()
    base = DualEncoder(model=str(tiny_model_dir))
    tuned = DualEncoder(model=str(tiny_model_dir), adapter=str(tmp_path))
    # an index built with the base model stays valid: documents encode exactly as before, queries change
    assert np.allclose(tuned.encode_documents(TEXTS), base.encode_documents(TEXTS), atol=1e-6)
    assert not np.allclose(tuned.encode_queries(TEXTS), base.encode_queries(TEXTS), atol=1e-3)
