"""FastTokenizer (tokenizers alone) gives what the transformers tokenizer that saved the folder gives."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from deepseek_rag import InvalidInputError
from deepseek_rag.encoding.fast_tokenizer import FastTokenizer

TEXTS = [
    "Either party may terminate this agreement, on 30 days' notice!",
    "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮。",
    "Ünïcödé café naïve — résumé",
    "",
    "  leading  spaces and\ttabs\nnew line",
    "word " * 300,
    "[CLS] special [SEP] tokens [MASK] <s> </s>",
]


@pytest.fixture(scope="module", params=["wordpiece", "unigram", "bundled"])
def saved(request, tiny_model_dir, tmp_path_factory):
    """(transformers tokenizer, FastTokenizer of the folder it saved itself to)."""
    from transformers import AutoTokenizer

    from deepseek_rag.encoding.model_folder import default_model_path
    from deepseek_rag.testing import build_tiny_model

    if request.param == "wordpiece":
        source = tiny_model_dir
    elif request.param == "unigram":
        source = build_tiny_model(tmp_path_factory.mktemp("unigram"), tokenizer="unigram")
    else:
        source = default_model_path()
    reference = AutoTokenizer.from_pretrained(source)
    folder = tmp_path_factory.mktemp(f"saved-{request.param}")
    reference.save_pretrained(folder)
    return reference, FastTokenizer(folder, model_input_names=reference.model_input_names)


def _plain(value):
    return [[tuple(x) if isinstance(x, (list, tuple)) else int(x) for x in row] for row in value]


@pytest.mark.parametrize("options", [{}, {"truncation": True, "max_length": 20},
                                     {"add_special_tokens": False, "return_offsets_mapping": True}])
def test_ids_masks_offsets_and_word_ids_match_transformers(saved, options):
    reference, ours = saved
    theirs, got = reference(TEXTS, **options), ours(TEXTS, **options)
    assert set(theirs.keys()) == set(got.keys())
    for key in theirs.keys():
        assert _plain(theirs[key]) == _plain(got[key]), key
    for i in range(len(TEXTS)):
        assert theirs.word_ids(i) == got.word_ids(i)
    one, mine = reference(TEXTS[0], add_special_tokens=False), ours(TEXTS[0], add_special_tokens=False)
    assert list(one["input_ids"]) == list(mine["input_ids"]) and mine.word_ids() == one.word_ids()


def test_padding_and_limits_match_transformers(saved):
    reference, ours = saved
    encoded = reference(TEXTS, truncation=True, max_length=30)
    batch = {key: encoded[key][:5] for key in encoded.keys()}
    for theirs, got in ((reference.pad(batch, return_tensors="np"), ours.pad(batch, return_tensors="np")),
                        (reference(TEXTS, padding=True, truncation=True, max_length=30, return_tensors="np"),
                         ours(TEXTS, padding=True, truncation=True, max_length=30, return_tensors="np"))):
        assert set(theirs) == set(got)
        for key in theirs:
            np.testing.assert_array_equal(theirs[key], got[key])
            assert got[key].dtype == np.int64
    assert ours.model_max_length == reference.model_max_length
    assert ours.num_special_tokens_to_add() == reference.num_special_tokens_to_add()
    assert ours.unk_token_id == reference.unk_token_id and ours.pad_token_id == reference.pad_token_id
    # a copy per thread (DualEncoder.tokenizer) tokenizes the same
    assert copy.deepcopy(ours)(TEXTS[:2])["input_ids"] == ours(TEXTS[:2])["input_ids"]


def test_a_folder_without_tokenizer_json_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="tokenizer.json"):
        FastTokenizer(tmp_path)
