"""DualEncoder: shapes, normalisation, order, prefixes, pooling, fingerprints, adapters."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from deepseek_rag import DualEncoder, EncoderConfig, EncoderMismatchError, InvalidInputError
from deepseek_rag.encoding.fingerprint import check_fingerprint
from deepseek_rag.encoding.model_folder import read_sentence_transformers_config


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    # float32: these tests compare vectors to 1e-5; "auto" picks bf16 on CPUs with native bf16
    return DualEncoder(model=str(tiny_model_dir), dtype="float32")


def test_vectors_are_unit_float32_in_input_order(encoder):
    texts = ["short", "a much longer text about terminating the agreement on notice", "高血压患者应当减少盐的摄入。"]
    together = encoder.encode_documents(texts, batch_size=2)
    assert together.dtype == np.float32 and together.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([encoder.encode_documents([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)  # length sorting puts results back in order


def test_cpu_batches_cap_padded_tokens_and_keep_results(tiny_model_dir, encoder):
    texts = ["word " * n for n in (60, 3, 40, 12, 55, 1, 30, 8)]
    budgeted = DualEncoder(model=str(tiny_model_dir), cpu_batch_tokens=100, dtype="float32")
    lengths = np.array(sorted((len(ids) for ids in budgeted.tokenizer(texts)["input_ids"]), reverse=True))
    batches = list(budgeted._batches(lengths, 64))
    assert batches[0][0] == 0 and batches[-1][1] == len(texts)
    assert all(stop > start and (stop - start) * lengths[start] <= 100 or stop - start == 1 for start, stop in batches)
    assert len(batches) > 1, "the budget splits what one 64-text batch would hold"
    np.testing.assert_allclose(budgeted.encode_documents(texts), encoder.encode_documents(texts), atol=1e-5)


def test_query_prefix_changes_only_the_query_side(tiny_model_dir):
    plain = DualEncoder(model=str(tiny_model_dir))
    prefixed = DualEncoder(model=str(tiny_model_dir), query_prefix="query: ", document_prefix="passage: ")
    text = ["payment is due in thirty days"]
    assert not np.allclose(plain.encode_queries(text), prefixed.encode_queries(text))
    assert not np.allclose(prefixed.encode_queries(text), prefixed.encode_documents(text))
    np.testing.assert_allclose(plain.encode_queries(text), plain.encode_documents(text), atol=1e-6)
    assert prefixed.document_prefix_tokens > 0 and plain.document_prefix_tokens == 0


def test_pooling_and_length_come_from_the_sentence_transformers_config(tiny_model_dir, tmp_path):
    found = read_sentence_transformers_config(tiny_model_dir)
    assert found == {"pooling": "mean", "max_seq_length": 64}
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "q: ", "passage": "p: "}}))
    assert read_sentence_transformers_config(tmp_path) == {"query_prefix": "q: ", "document_prefix": "p: "}
    cls = DualEncoder(model=str(tiny_model_dir), pooling="cls")
    assert cls.pooling == "cls"
    assert not np.allclose(cls.encode_queries(["abc def"]), DualEncoder(model=str(tiny_model_dir)).encode_queries(["abc def"]))


def test_matches_sentence_transformers(tiny_model_dir, encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_model_dir), device="cpu")
    texts = ["either party may terminate", "governing law of new york"]
    ours = encoder.encode_documents(texts)
    theirs = reference.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_bfloat16_stays_close_to_float32(tiny_model_dir, encoder):
    bf16 = DualEncoder(model=str(tiny_model_dir), dtype="bfloat16")
    texts = ["either party may terminate this agreement", "payment is due within thirty days"]
    cosine = (bf16.encode_documents(texts) * encoder.encode_documents(texts)).sum(axis=1)
    assert cosine.min() > 0.99


def test_fingerprint_identifies_weights_not_paths(tiny_model_dir, tmp_path):
    import shutil

    from deepseek_rag.testing import build_tiny_model

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    same = DualEncoder(model=str(copy)).fingerprint()
    original = DualEncoder(model=str(tiny_model_dir)).fingerprint()
    check_fingerprint(original, same, "here")  # same weights elsewhere: fine
    other = DualEncoder(model=str(build_tiny_model(tmp_path / "other", seed=1))).fingerprint()
    with pytest.raises(EncoderMismatchError, match="base_fingerprint"):
        check_fingerprint(original, other, "idx")


def test_bad_config_and_input_are_clear_errors(tiny_model_dir, encoder):
    with pytest.raises(InvalidInputError, match="pooling"):
        EncoderConfig(pooling="median")
    with pytest.raises(InvalidInputError, match="float16"):
        DualEncoder(model=str(tiny_model_dir), dtype="float16", device="cpu")
    with pytest.raises(InvalidInputError, match="does not exist"):
        DualEncoder(model="./no/such/model")
    with pytest.raises(InvalidInputError, match="list"):
        encoder.encode_queries("not a list")
    assert encoder.encode_queries([]).shape == (0, encoder.dim)


def test_adapter_folder_loads_per_side_and_refuses_another_base(tiny_model_dir, tmp_path):
    """A PEFT LoRA adapter per side, in the folder format `deepseek-rag finetune` writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from deepseek_rag.encoding.fingerprint import base_model_fingerprint
    from deepseek_rag.encoding.model_folder import ADAPTER_CONFIG_NAME
    from deepseek_rag.testing import build_tiny_model

    base = AutoModel.from_pretrained(tiny_model_dir)
    fingerprint = base_model_fingerprint(base)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False))
    torch.manual_seed(0)
    peft_model.save_pretrained(tmp_path / "adapter" / "query")
    (tmp_path / "adapter" / ADAPTER_CONFIG_NAME).write_text(json.dumps({
        "format_version": 1, "base_model": "tiny", "base_model_fingerprint": fingerprint,
        "sides": {"query": "query", "document": None},
    }))
    plain = DualEncoder(model=str(tiny_model_dir))
    adapted = DualEncoder(model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    text = ["which law governs the contract"]
    assert not np.allclose(adapted.encode_queries(text), plain.encode_queries(text), atol=1e-4)
    np.testing.assert_allclose(adapted.encode_documents(text), plain.encode_documents(text), atol=1e-5)
    assert adapted.fingerprint()["query_adapter"] and plain.fingerprint()["query_adapter"] is None
    # documents are untouched, so an index built without the query-side adapter opens with it
    assert adapted.fingerprint()["adapter"] is None
    check_fingerprint(plain.fingerprint(), adapted.fingerprint(), "idx")

    other = build_tiny_model(tmp_path / "other-base", seed=3)
    with pytest.raises(EncoderMismatchError, match="trained on base model"):
        DualEncoder(model=str(other), adapter=str(tmp_path / "adapter"))


def test_token_ids_are_shared_across_threads_without_copies(encoder):
    """Request threads come and go (AnyIO's pool): counting tokens must not copy the tokenizer for each."""
    texts = ["Aspirin lowers the risk of stroke.", "糖尿病人能吃什么水果", "a b c " * 300]
    expected = [encoder.tokenizer(t, add_special_tokens=False, truncation=False, verbose=False)["input_ids"] for t in texts]
    results: list[list[list[int]]] = []

    def count() -> None:
        results.append([encoder.token_ids(t) for t in texts * 20][: len(texts)])

    threads = [threading.Thread(target=count) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 16
    assert len(expected[2]) == 900  # no truncation
    assert not hasattr(encoder._local, "tokenizer")  # this thread never needed a copy
    assert encoder.unk_token_id == encoder.tokenizer.unk_token_id
    offsets = encoder.tokenizer(texts[0], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert encoder.token_offsets(texts[0]) == [tuple(o) for o in offsets]
