"""Tiny random-init encoders for tests: real transformers code paths, no downloads, built in a second.

``build_tiny_model(path)`` writes a sentence-transformers style folder (BERT weights, a WordPiece
tokenizer trained on the given texts, a mean-pooling config) that :class:`deepseek_rag.DualEncoder`
loads like any local model; ``tokenizer="unigram"`` writes an XLM-R style one instead (XLM-RoBERTa
weights, a SentencePiece-style Unigram tokenizer with ``▁`` word markers), and ``prompts`` adds e5-style
query / passage prefixes. The vectors mean nothing; tests use them for shapes, plumbing, ids and
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
    tokenizer: str = "wordpiece",
    prompts: dict[str, str] | None = None,
) -> Path:
    """Write a tiny random-init encoder with a tokenizer trained on ``texts`` to ``path``.

    ``tokenizer="wordpiece"``: BERT with a WordPiece tokenizer (CJK characters split one per token, as
    bert-base-chinese does). ``tokenizer="unigram"``: XLM-RoBERTa with a Unigram (SentencePiece-style)
    tokenizer, as XLM-R and multilingual e5 use. ``prompts`` (e.g. ``{"query": "query: ", "document":
    "passage: "}``) is written to ``config_sentence_transformers.json``, where e5 models keep theirs.
    """
    if tokenizer not in ("wordpiece", "unigram"):
        raise ValueError(f"tokenizer={tokenizer!r} is not 'wordpiece' or 'unigram'")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if tokenizer == "unigram":
        _write_unigram_xlmr(path, list(texts), hidden_size, max_seq_length, vocab_size, seed)
    else:
        _write_wordpiece_bert(path, list(texts), hidden_size, max_seq_length, vocab_size, seed)
    _write_sentence_transformers_files(path, hidden_size, max_seq_length, pooling, prompts)
    return path


def _write_wordpiece_bert(path: Path, texts: list[str], hidden_size: int, max_seq_length: int, vocab_size: int, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # BertNormalizer splits CJK characters into single tokens, as bert-base-chinese does.
    normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The vocabulary is built by counting, not by the WordPiece trainer, whose tie-breaking differs
    # between runs: the same texts must give the same tokens, chunks and vectors in every test run.
    counts: dict[str, int] = {}
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] = counts.get(word, 0) + 1
    chars = sorted({c for word in counts for c in word})
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens = list(dict.fromkeys([*specials, *chars, *(f"##{c}" for c in chars), *words]))[:vocab_size]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
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


def _write_unigram_xlmr(path: Path, texts: list[str], hidden_size: int, max_seq_length: int, vocab_size: int, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's order: <pad> is id 1, its padding_idx
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.train_from_iterator(
        texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    )
    bos_id, eos_id = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos_id), ("</s>", eos_id)],
    )
    XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=max_seq_length, bos_token="<s>", eos_token="</s>",
        cls_token="<s>", sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    ).save_pretrained(path)

    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=max_seq_length + 2,  # RoBERTa positions start after the padding index
        pad_token_id=tokenizer.token_to_id("<pad>"),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )
    XLMRobertaModel(config).save_pretrained(path)


def _write_sentence_transformers_files(
    path: Path, hidden_size: int, max_seq_length: int, pooling: str, prompts: dict[str, str] | None
) -> None:
    if prompts:
        (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
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


def build_tiny_adapter(model_dir: str | Path, out: str | Path, *, sides: tuple[str, ...] = ("query", "document"),
                       seed: int = 1) -> Path:
    """Write a LoRA adapter folder (as ``deepseek-rag finetune`` does) with random, non-zero weights for ``sides``.

    Each listed side gets its own adapter, so the query and document sides encode a text differently: what
    concurrency tests need to see a side flip. The vectors mean nothing.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from .encoding.fingerprint import base_model_fingerprint
    from .encoding.model_folder import ADAPTER_CONFIG_NAME, ADAPTER_FORMAT_VERSION

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = AutoModel.from_pretrained(model_dir)
    fingerprint = base_model_fingerprint(base)
    for offset, side in enumerate(sides):
        torch.manual_seed(seed + offset)
        config = LoraConfig(r=4, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False)
        get_peft_model(AutoModel.from_pretrained(model_dir), config).save_pretrained(out / side)
    manifest = {
        "format_version": ADAPTER_FORMAT_VERSION, "base_model": str(model_dir), "base_model_fingerprint": fingerprint,
        "sides": {side: (side if side in sides else None) for side in ("query", "document")}, "projection": None,
        "encoder": {},
    }
    (out / ADAPTER_CONFIG_NAME).write_text(json.dumps(manifest))
    return out


def start_milvus_lite_server(data_dir: str | Path, *, timeout: float = 30.0):  # -> (subprocess.Popen, uri)
    """Start ``milvus-lite server --data-dir DATA_DIR`` on a free 127.0.0.1 port; returns (process, http URI) once
    it answers. The caller terminates the process."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = shutil.which("milvus-lite") or str(Path(sys.executable).with_name("milvus-lite"))
    server = subprocess.Popen([command, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"milvus-lite server exited with {server.returncode}")
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"milvus-lite server did not answer on port {port} within {timeout:g}s")


def release_milvus_lite(path: str | Path) -> None:
    """Stop this process's embedded milvus-lite for the file ``path`` and forget its client."""
    from .vectors.milvus_connection import forget_client

    forget_client(f"milvus://{Path(path).absolute()}")
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return
    server_manager_instance.release_server(str(path))
