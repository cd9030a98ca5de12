"""Analysis and language detection: the terms BM25 matches on, for English, Chinese and mixed text."""

from __future__ import annotations

import pytest

from deepseek_rag import InvalidInputError
from deepseek_rag.sparse.analysis import Analyzer, normalize, segment_chinese, stemmer_language, to_simplified
from deepseek_rag.ingest.language import detect_language


def test_english_is_lower_cased_stemmed_and_stop_worded():
    assert Analyzer("en")("The Patients were RUNNING trials") == ["patient", "were", "run", "trial"]
    assert Analyzer("en", stemming=False, stopwords=False)("The Patients") == ["the", "patients"]


def test_full_width_ascii_and_punctuation_are_normalised():
    assert normalize("ＢＲＣＡ１，ｔｅｓｔ！") == "brca1,test!"
    assert Analyzer("en")("ＢＲＣＡ１　ｍｕｔａｔｉｏｎｓ") == Analyzer("en")("BRCA1 mutations") == ["brca1", "mutat"]


def test_traditional_characters_become_simplified():
    assert to_simplified("高血壓與糖尿病") == "高血压与糖尿病"
    analyzer = Analyzer("zh")
    assert analyzer("高血壓患者") == analyzer("高血压患者")


@pytest.mark.parametrize("mode, expected", [
    ("chars", ["高", "血", "压", "高血", "血压"]),
    ("search", ["血压", "高血压"]),
    ("precise", ["高血压"]),
])
def test_chinese_modes(mode, expected):
    assert segment_chinese("高血压", mode) == expected


def test_mixed_scripts_split_into_runs_each_analysed_its_own_way():
    terms = Analyzer("zh")("COVID-19疫苗的副作用 in 2021：BRCA1突变")
    assert {"covid", "19", "2021", "brca1"} <= set(terms)  # Latin runs: English rules
    assert {"疫苗", "副作", "作用", "突变"} <= set(terms)  # Chinese runs: unigrams + bigrams
    assert "的" not in terms and "in" not in terms  # Chinese and English stop words
    assert not any("疫" in t and "c" in t for t in terms)  # no term spans two scripts


def test_text_without_terms_gives_nothing():
    analyzer = Analyzer("zh")
    for text in ("", "   ", "？？！。，、……", "!!! ... ---", "的", "the a of"):
        assert analyzer(text) == []


def test_stemmer_follows_the_language():
    assert stemmer_language("fr") == "french" and stemmer_language("zh") == "english"
    assert stemmer_language(None) == "english" and stemmer_language("pt-BR") == "portuguese"
    assert Analyzer("fr")("Les patients étaient malades") == ["patient", "malad"]
    with pytest.raises(InvalidInputError, match="chinese='jieba'"):
        Analyzer("zh", chinese="jieba")


@pytest.mark.parametrize("text, language", [
    ("Patients with hypertension should reduce their salt intake every day.", "en"),
    ("高血压患者应当减少盐的摄入。", "zh"),
    ("高血壓患者應當減少鹽的攝入。", "zh"),
    ("covid 疫苗 副作用", "zh"),
    ("これは日本語の文章です。", "ja"),
    ("한국어 텍스트입니다", "ko"),
    ("Les patients étaient malades et fatigués après le traitement.", "fr"),
    ("？？！ 123 ...", None),
])
def test_detect_language(text, language):
    assert detect_language(text) == language
    assert detect_language(text) == language  # deterministic
