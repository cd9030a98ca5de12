from __future__ import annotations

import pytest
from torch import nn

from deepseek_rag_finetune.config import FinetuneConfig
from deepseek_rag_finetune.lora import detect_target_modules


def test_defaults_and_json_round_trip(tmp_path):
    config = FinetuneConfig(lora_r=8, target_modules="q,v", mining_ranks=[2, 10], adapter_mode="asymmetric")
    assert config.target_modules == ["q", "v"] and config.mining_ranks == (2, 10)
    assert FinetuneConfig.from_json(config.to_json()) == config
    path = tmp_path / "c.json"
    config.to_json(path)
    assert FinetuneConfig.from_json(path) == config
    assert FinetuneConfig().lora_r == 16 and FinetuneConfig().temperature == 0.05


@pytest.mark.parametrize("field,value", [
    ("lora_r", 0), ("adapter_mode", "both"), ("loss", "triplet"), ("temperature", 0.0), ("batch_size", 1),
    ("dev_fraction", 1.0), ("amp", "fp8"), ("mining_ranks", (5, 2)), ("grad_accumulation", 0), ("target_modules", []),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"FinetuneConfig\.{field}="):
        FinetuneConfig(**{field: value})


def test_every_field_has_help():
    from dataclasses import fields

    assert all(f.metadata.get("help") for f in fields(FinetuneConfig))


class _Attention(nn.Module):
    def __init__(self, names):
        super().__init__()
        for name in names:
            setattr(self, name, nn.Linear(4, 4))


class _Model(nn.Module):
    def __init__(self, names, pooler=False):
        super().__init__()
        self.layer = nn.ModuleList([_Attention(names)])
        if pooler:
            self.pooler = _Attention(["dense"])


@pytest.mark.parametrize("names,expected", [
    (["query", "key", "value", "dense"], ["query", "key", "value", "dense"]),  # BERT, XLM-R, MiniLM
    (["q", "k", "v", "o", "intermediate"], ["q", "k", "v", "o"]),  # MPNet (e5/all-mpnet style)
    (["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]),
])
def test_target_modules_detected_by_linear_names(names, expected):
    assert detect_target_modules(_Model(names)) == expected


def test_pooler_dense_alone_is_not_a_target_and_unknown_family_raises():
    with pytest.raises(ValueError, match="target_modules"):
        detect_target_modules(_Model(["w1", "w2"], pooler=True))


def test_detects_real_bert(tiny_model_dir):
    from transformers import AutoModel

    assert detect_target_modules(AutoModel.from_pretrained(tiny_model_dir)) == ["query", "key", "value", "dense"]
