"""Tiny random-init encoders for tests: real transformers code paths, no downloads, built in a second.

``build_tiny_model(path)`` writes a sentence-transformers style folder (BERT weights, a WordPiece
tokenizer trained on the given texts, a mean-pooling config) that :class:`deepseek_rag.DualEncoder`
loads like any local model. The vectors mean nothing; tests use them for shapes, plumbing, ids and
offsets, never for retrieval quality.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

_DEFAULT_TEXTS = (
    "The quick brown fox jumps over the lazy dog. Either party may terminate this agreement on notice.",
    "This Agreement shall be governed by the laws of the State of New York. Payment is due in thirty days.",
    "Patients with hypertension should reduce salt intake. Insulin resistance precedes type 2 diabetes.",
    "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。本合同自双方签字之日起生效。",
    "What is the termination notice period? Which law governs the contract? 如何治疗高血压？",
)


def build_tiny_model(
    path: str | Path,
    texts: Iterable[str] = _DEFAULT_TEXTS,
    *,
    hidden_size: int = 32,
    max_seq_length: int = 64,
    vocab_size: int = 800,
    pooling: str = "mean",
    seed: int = 0,
) -> Path:
    """Write a tiny random-init BERT encoder with a WordPiece tokenizer trained on ``texts`` to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # BertNormalizer splits CJK characters into single tokens, as bert-base-chinese does.
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        list(texts), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    BertTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_seq_length).save_pretrained(path)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_seq_length,
    )
    BertModel(config).save_pretrained(path)

    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden_size,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
            }
        )
    )
    (path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    (path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    return path
