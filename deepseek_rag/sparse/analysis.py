"""Text analysis for the lexical (BM25) side: text in, the list of terms a search engine matches on.

Every analyzer runs the same steps, so a query and a document agree on their terms:

1. NFKC: full-width ASCII and punctuation become half-width (``ＡＢＣ１２３，`` → ``ABC123,``), compatibility
   ideographs become their unified forms; then lower case.
2. Traditional Chinese characters become simplified ones (OpenCC ``t2s``), so ``高血壓`` matches ``高血压``.
3. The text is split into runs of Chinese characters (Han, plus Japanese kana) and everything else.
   Chinese runs become character unigrams and bigrams (``高血压`` → ``高 血 压 高血 血压``, the default),
   or jieba words — search mode, which adds the shorter words inside long ones (``高血压`` → ``血压``,
   ``高血压``), or precise mode — and bm25s's Chinese stop words are dropped. Bigrams are the default
   because they measured best: on a Chinese medical QA set (7,244 answers, 721 questions) BM25 nDCG@10
   was 0.285 with bigrams, 0.251 with jieba search mode and 0.248 with jieba precise mode (stop words
   dropped in all three; ``benchmarks/hybrid.py``). Patients and doctors word the same thing
   differently, and a segmenter that cuts a phrase one way in a question and another way in an answer
   loses the match; overlapping bigrams cannot. Other runs are cut into words of two or more letters or digits (the rule of bm25s and
   Lucene's classic tokenizer), stop words are dropped and words are stemmed with the Snowball stemmer
   of the document's language (English when it has none).

What an analyzer does not do: detect languages (``language.py``), score or index anything (``sparse.py``).
jieba's dictionary is loaded on the first Chinese text (a second or so); words added with
``jieba.add_word`` / ``jieba.load_userdict`` apply, so add them before indexing and querying alike.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any

from ..errors import InvalidInputError
from .dictionary import jieba_tokenizer

logger = logging.getLogger(__name__)

CHINESE_MODES = ("search", "precise", "chars", "chars+search")

# Han (BMP blocks, compatibility ideographs, extensions B–G) and Japanese kana; Hangul is left to the word
# rule (Korean puts spaces between words).
_CJK_CLASS = (
    "\u3040-\u30ff\u31f0-\u31ff"  # hiragana, katakana, katakana extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_CJK_RUN = re.compile(f"([{_CJK_CLASS}]+)")
_HAN = re.compile(f"[{_CJK_CLASS}]")
_WORD = re.compile(r"(?u)\b\w\w+\b")

# ISO 639-1 code → PyStemmer algorithm. A language without one (Chinese included: the Latin words inside
# Chinese text are mostly English terms) is analysed with English rules.
SNOWBALL_LANGUAGES = {
    "ar": "arabic", "ca": "catalan", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi",
    "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "nl": "dutch", "no": "norwegian", "pt": "portuguese", "ro": "romanian",
    "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
}
_ALGORITHMS = frozenset(SNOWBALL_LANGUAGES.values())
# Stop word lists bm25s ships, by Snowball algorithm name.
_STOPWORD_LISTS = {
    "english": "STOPWORDS_EN", "german": "STOPWORDS_GERMAN", "dutch": "STOPWORDS_DUTCH",
    "french": "STOPWORDS_FRENCH", "spanish": "STOPWORDS_SPANISH", "portuguese": "STOPWORDS_PORTUGUESE",
    "italian": "STOPWORDS_ITALIAN", "russian": "STOPWORDS_RUSSIAN", "swedish": "STOPWORDS_SWEDISH",
    "norwegian": "STOPWORDS_NORWEGIAN", "danish": "STOPWORDS_DANISH", "turkish": "STOPWORDS_TURKISH",
}


def stemmer_language(language: str | None) -> str:
    """The Snowball algorithm for the non-Chinese words of text in ``language`` (an ISO 639-1 code, or
    already an algorithm name such as ``"french"``); English rules when there is none."""
    if not language:
        return "english"
    language = language.lower()
    if language in _ALGORITHMS:
        return language
    return SNOWBALL_LANGUAGES.get(language.split("-")[0].split("_")[0], "english")


@lru_cache(maxsize=1)
def _converter() -> Any:
    import opencc

    return opencc.OpenCC("t2s.json")


def to_simplified(text: str) -> str:
    """Traditional Chinese characters → simplified ones (OpenCC ``t2s``); text without Han is returned as is."""
    return _converter().convert(text) if _HAN.search(text) else text


def normalize(text: str, *, simplified: bool = True) -> str:
    """NFKC, lower case, and (when ``simplified``) traditional → simplified Chinese."""
    text = unicodedata.normalize("NFKC", text).lower()
    return to_simplified(text) if simplified else text


def segment_chinese(run: str, mode: str = "search", user_dictionary: str | None = None) -> list[str]:
    """Words of a run of Chinese characters: jieba search mode, jieba precise mode, chars (1- and 2-grams), or
    chars+search (both: the character n-grams, then jieba's search-mode words). jieba also knows the words of
    ``user_dictionary`` (a jieba dictionary file, see ``dictionary.py``)."""
    chars = list(run) + [run[i : i + 2] for i in range(len(run) - 1)] if mode in ("chars", "chars+search") else []
    if mode == "chars":
        return chars
    jieba = jieba_tokenizer(user_dictionary)
    return chars + (jieba.lcut(run) if mode == "precise" else jieba.lcut_for_search(run))


@lru_cache(maxsize=None)
def _stopwords(algorithm: str, chinese: bool) -> frozenset[str]:
    import bm25s.stopwords

    words = set(getattr(bm25s.stopwords, _STOPWORD_LISTS[algorithm], ())) if algorithm in _STOPWORD_LISTS else set()
    if chinese:
        words |= set(bm25s.stopwords.STOPWORDS_CHINESE)
    return frozenset(words)


class Analyzer:
    """Turns text into BM25 terms; see the module docstring for the steps.

    >>> Analyzer("en")("Patients were RUNNING trials")
    ['patient', 'were', 'run', 'trial']
    >>> Analyzer("zh")("高血壓患者")
    ['高', '血', '压', '患', '高血', '血压', '压患', '患者']
    >>> Analyzer("zh", chinese="search")("高血壓患者")
    ['血压', '高血压', '患者']
    """

    def __init__(
        self,
        language: str | None = "en",
        *,
        stemming: bool = True,
        stopwords: bool = True,
        chinese_stopwords: bool = True,
        chinese: str = "chars",
        simplified: bool = True,
        user_dictionary: str | None = None,
    ) -> None:
        if chinese not in CHINESE_MODES:
            raise InvalidInputError(f"chinese={chinese!r} is not one of {', '.join(CHINESE_MODES)}")
        self.algorithm = stemmer_language(language)
        self.stemming = stemming
        self.chinese = chinese
        self.simplified = simplified
        self.user_dictionary = user_dictionary
        self.stopwords = _stopwords(self.algorithm, chinese_stopwords) if stopwords else frozenset()
        self._local = threading.local()  # PyStemmer objects are not thread-safe: one per thread

    def _stem(self, words: list[str]) -> list[str]:
        if not self.stemming or not words:
            return words
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            import Stemmer

            stemmer = self._local.stemmer = Stemmer.Stemmer(self.algorithm)
        return stemmer.stemWords(words)

    def __call__(self, text: str) -> list[str]:
        """The terms of ``text`` in order (repeats kept: BM25 counts them); [] for text with none."""
        text = normalize(text, simplified=self.simplified)
        terms: list[str] = []
        stop = self.stopwords
        # re.split with a capture group alternates: other text, a CJK run, other text, ...
        for i, part in enumerate(_CJK_RUN.split(text)):
            if not part:
                continue
            if i % 2:
                terms.extend(w for w in segment_chinese(part, self.chinese, self.user_dictionary) if w not in stop)
            else:
                terms.extend(self._stem([w for w in _WORD.findall(part) if w not in stop]))
        return terms
