"""The lexical side of an index: BM25 over per-segment postings, scored with the whole version's statistics.

Each segment keeps its chunks' term postings (term → chunk positions and term frequencies, CSC order), the
chunk lengths and the chunk ids, written once as ``.npy`` files and memory-mapped when read. A search
computes BM25 at query time from the statistics of the *live* chunks of every segment of the version —
chunk count, mean length and each query term's document frequency, with deleted chunks left out — so an
index made of many segments with deletion markers scores exactly as one built from scratch over the same
chunks. The formulas are bm25s's (``lucene``: idf ``log(1 + (N - df + .5)/(df + .5))``, tf part
``tf / (tf + k1·(1 - b + b·len/avglen))``; ``atire``), and tests check the scores against bm25s itself.

Why not bm25s's own index: it bakes idf and the mean length into one static score matrix, so any upsert
would mean rebuilding and rewriting the whole matrix; publishing a version must cost what the change costs.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import IndexFormatError, InvalidInputError
from .analysis import CHINESE_MODES, Analyzer, stemmer_language
from .dictionary import dictionary_checksum
from .query_model import QueryModel, load_query_model

logger = logging.getLogger(__name__)

POSTINGS_FORMAT_VERSION = 1
BM25_METHODS = ("lucene", "atire")
_ARRAYS = ("ptr", "rows", "tf", "lengths", "chunk_ids")


@dataclass
class SparseConfig(Config):
    """How chunks are analysed and scored on the lexical side; saved in the manifest with the index settings."""

    enabled: bool = field(default=True, metadata={"help": "Keep a BM25 index beside the vectors (sparse / hybrid search)."})
    headers: bool = field(
        default=True, metadata={"help": "Index each chunk with its document title and section heading in front."}
    )
    k1: float = field(default=1.5, metadata={"help": "BM25 term-frequency saturation (bm25s default)."})
    b: float = field(default=0.75, metadata={"help": "BM25 length normalisation, 0 (none) to 1 (full)."})
    method: str = field(default="lucene", metadata={"help": f"Scoring variant: {', '.join(BM25_METHODS)} (as bm25s)."})
    stemming: bool = field(default=True, metadata={"help": "Snowball-stem non-Chinese words in the document's language."})
    stopwords: bool = field(default=True, metadata={"help": "Drop the language's stop words (bm25s lists)."})
    chinese_stopwords: bool = field(default=True, metadata={"help": "Also drop bm25s's 841 Chinese stop words."})
    chinese: str = field(
        default="chars",
        metadata={"help": "Chinese terms: chars (unigrams + bigrams), search (jieba search mode), precise (jieba), "
                          "chars+search (both the character n-grams and jieba's search-mode words)."},
    )
    simplified: bool = field(default=True, metadata={"help": "Map traditional Chinese characters to simplified."})
    user_dictionary: str | None = field(
        default=None,
        metadata={"help": "A jieba user dictionary file (one word a line: medical or legal terms) for the jieba "
                          "modes; the index records its checksum, so queries must find the same words."},
    )
    query_model: str | None = field(
        default=None,
        metadata={"help": "A learned query model file (query-term weights, a field prior; `deepseek-rag fit-sparse`) "
                          "that sparse and hybrid searches use; the index records its checksum."},
    )
    query_model_checksum: str | None = field(
        default=None, metadata={"help": "sha256 of the query model file, recorded when it is attached (None: read it)."}
    )

    def __post_init__(self) -> None:
        if self.method not in BM25_METHODS:
            raise InvalidInputError(f"SparseConfig.method={self.method!r} is not one of {', '.join(BM25_METHODS)}")
        if self.chinese not in CHINESE_MODES:
            raise InvalidInputError(f"SparseConfig.chinese={self.chinese!r} is not one of {', '.join(CHINESE_MODES)}")
        # "not k1 >= 0" also refuses NaN, which would make every BM25 score NaN (and --json output invalid).
        if isinstance(self.k1, bool) or not isinstance(self.k1, (int, float)) or not 0 <= self.k1 < float("inf"):
            raise InvalidInputError(f"SparseConfig.k1={self.k1!r} must be a finite number >= 0")
        if isinstance(self.b, bool) or not isinstance(self.b, (int, float)) or not 0 <= self.b <= 1:
            raise InvalidInputError(f"SparseConfig.b={self.b!r} must be between 0 and 1")
        if self.user_dictionary is not None:
            if not isinstance(self.user_dictionary, str) or not self.user_dictionary.strip():
                raise InvalidInputError(f"SparseConfig.user_dictionary={self.user_dictionary!r} must be a file path")
            if self.chinese == "chars":
                raise InvalidInputError("SparseConfig.user_dictionary is read by jieba, and chinese='chars' does not "
                                        "use jieba; choose chinese='chars+search', 'search' or 'precise'")
        if self.query_model is not None and (not isinstance(self.query_model, str) or not self.query_model.strip()):
            raise InvalidInputError(f"SparseConfig.query_model={self.query_model!r} must be a file path")

    def analysis_key(self) -> dict[str, Any]:
        """The fields that decide a chunk's terms (postings written with others must be rebuilt); a user dictionary
        by the checksum of its words, wherever the file lies."""
        key = {k: getattr(self, k) for k in ("headers", "stemming", "stopwords", "chinese_stopwords", "chinese", "simplified")}
        if self.user_dictionary is not None:
            key["user_dictionary"] = dictionary_checksum(self.user_dictionary)
        return key

    def scoring_key(self) -> dict[str, Any]:
        """What a learned query model depends on: the analysis and the BM25 parameters it was fitted under."""
        return {**self.analysis_key(), "k1": float(self.k1), "b": float(self.b), "method": self.method}

    def load_query_model(self) -> QueryModel | None:
        """The query model this config names, checked against its recorded checksum and this config's scoring
        (None without one)."""
        if self.query_model is None:
            return None
        return load_query_model(self.query_model, self.query_model_checksum, self.scoring_key())

    def analyzer(self, language: str | None) -> Analyzer:
        """The analyzer for text in ``language`` under this config."""
        return Analyzer(
            language, stemming=self.stemming, stopwords=self.stopwords, chinese_stopwords=self.chinese_stopwords,
            chinese=self.chinese, simplified=self.simplified, user_dictionary=self.user_dictionary,
        )


class Postings:
    """Term postings of one segment: immutable, built from term lists or opened from files.

    ``vocab[t]`` is local term ``t``; its postings are ``rows[ptr[t]:ptr[t+1]]`` (chunk positions, ascending)
    with term frequencies ``tf[...]``; ``lengths[p]`` is chunk ``p``'s term count, ``chunk_ids[p]`` its id
    (ascending). ``algorithms`` are the stemmers its chunks were analysed with (queries are analysed with each).
    """

    def __init__(
        self, vocab: list[str], ptr: np.ndarray, rows: np.ndarray, tf: np.ndarray, lengths: np.ndarray,
        chunk_ids: np.ndarray, algorithms: Sequence[str],
    ) -> None:
        self.vocab = vocab
        self.term_index = {term: i for i, term in enumerate(vocab)}
        self.ptr, self.rows, self.tf, self.lengths, self.chunk_ids = ptr, rows, tf, lengths, chunk_ids
        self.algorithms = list(algorithms)
        self.total_length = float(np.sum(lengths, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def from_terms(cls, chunk_ids: Sequence[int], term_lists: Sequence[Sequence[str]], algorithms: Iterable[str]) -> Postings:
        """Postings of chunks ``chunk_ids`` (ascending) whose analysed terms are ``term_lists``."""
        ids = np.asarray(chunk_ids, dtype=np.int64)
        if len(ids) != len(term_lists):
            raise InvalidInputError(f"{len(ids)} chunk ids but {len(term_lists)} term lists")
        if len(ids) > 1 and not np.all(np.diff(ids) > 0):
            raise InvalidInputError("postings need ascending, unique chunk ids")
        vocab: dict[str, int] = {}
        encoded = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in terms), dtype=np.int64, count=len(terms))
                   for terms in term_lists]
        lengths = np.fromiter((len(t) for t in term_lists), dtype=np.float32, count=len(term_lists))
        cols = np.concatenate(encoded) if encoded else np.empty(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(ids), dtype=np.int64), lengths.astype(np.int64))
        return cls._from_coo(list(vocab), cols, rows, np.ones(len(cols), dtype=np.float32), lengths, ids, algorithms)

    @classmethod
    def _from_coo(cls, vocab: list[str], cols: np.ndarray, rows: np.ndarray, counts: np.ndarray, lengths: np.ndarray,
                  chunk_ids: np.ndarray, algorithms: Iterable[str]) -> Postings:
        n = max(1, len(chunk_ids))
        keys, inverse = np.unique(cols * n + rows, return_inverse=True)  # sorted by term, then position
        tf = np.bincount(inverse, weights=counts, minlength=len(keys)).astype(np.float32)
        term_of = keys // n
        ptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(vocab)), out=ptr[1:])
        return cls(vocab, ptr, (keys % n).astype(np.int32), tf, lengths.astype(np.float32), chunk_ids,
                   list(dict.fromkeys(algorithms)))

    @classmethod
    def merge(cls, parts: Sequence[tuple[Postings, np.ndarray | None]]) -> Postings:
        """One postings object from ``(postings, keep_mask)`` parts (chunk ids ascending across parts)."""
        vocab: dict[str, int] = {}
        cols_all, rows_all, tf_all, lengths_all, ids_all, algorithms = [], [], [], [], [], []
        offset = 0
        for postings, keep in parts:
            keep = np.ones(len(postings), dtype=bool) if keep is None else keep
            new_position = np.cumsum(keep) - 1 + offset
            remap = np.fromiter((vocab.setdefault(t, len(vocab)) for t in postings.vocab), dtype=np.int64,
                                count=len(postings.vocab))
            cols = np.repeat(remap, np.diff(postings.ptr))
            rows = np.asarray(postings.rows, dtype=np.int64)
            alive = keep[rows]
            cols_all.append(cols[alive])
            rows_all.append(new_position[rows[alive]])
            tf_all.append(np.asarray(postings.tf)[alive])
            lengths_all.append(np.asarray(postings.lengths)[keep])
            ids_all.append(np.asarray(postings.chunk_ids)[keep])
            algorithms.extend(postings.algorithms)
            offset += int(keep.sum())
        ids = np.concatenate(ids_all) if ids_all else np.empty(0, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if len(ids) > 1 and not np.all(order == np.arange(len(ids))):
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            rows_all = [position[r] for r in rows_all]
            ids = ids[order]
            lengths = np.concatenate(lengths_all)[order]
        else:
            lengths = np.concatenate(lengths_all) if lengths_all else np.empty(0, dtype=np.float32)
        cat = lambda arrays, dtype: np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)  # noqa: E731
        return cls._from_coo(list(vocab), cat(cols_all, np.int64), cat(rows_all, np.int64), cat(tf_all, np.float32),
                             lengths, ids, algorithms)

    # ------------------------------------------------------------------------------------ files
    def save(self, folder: Path, config: SparseConfig) -> dict[str, int]:
        """Write the postings into ``folder`` (created); returns file name → size."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": POSTINGS_FORMAT_VERSION, "analysis": config.analysis_key(),
                "algorithms": self.algorithms, "chunks": len(self), "vocab": self.vocab}
        sizes = {}
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        for path in folder.iterdir():
            sizes[f"{folder.name}/{path.name}"] = path.stat().st_size
        return sizes

    @classmethod
    def open(cls, folder: Path, config: SparseConfig) -> Postings:
        """Postings written by :meth:`save`, memory-mapped; written under other analysis settings is an error."""
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format_version") != POSTINGS_FORMAT_VERSION:
                raise IndexFormatError(
                    f"{folder} has postings format {meta.get('format_version')!r}; this library reads "
                    f"{POSTINGS_FORMAT_VERSION}. Upgrade deepseek-rag or rebuild the index."
                )
            # plain ndarray views of the mappings: numpy.memmap slices cost a Python call each on the search path
            arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
                      for name in _ARRAYS}
        except (OSError, ValueError, KeyError) as exc:
            raise IndexFormatError(f"{folder} does not hold readable BM25 postings ({exc}); rebuild the index") from exc
        if len(arrays["chunk_ids"]) != meta.get("chunks") or len(arrays["ptr"]) != len(meta["vocab"]) + 1:
            raise IndexFormatError(f"{folder}: the BM25 postings are truncated; rebuild the index")
        if meta.get("analysis") != config.analysis_key():
            raise IndexFormatError(
                f"{folder}: the BM25 postings were analysed with other settings ({meta.get('analysis')}) than the index "
                f"records ({config.analysis_key()}); rebuild the index"
            )
        return cls(meta["vocab"], arrays["ptr"], arrays["rows"], arrays["tf"], arrays["lengths"], arrays["chunk_ids"],
                   meta.get("algorithms") or [])

    def nbytes(self) -> int:
        return int(sum(np.asarray(getattr(self, name)).nbytes for name in _ARRAYS))


@dataclass
class PostingsPart:
    """One segment's postings as a version sees them: which positions are live, which a filter allows."""

    postings: Postings
    live: np.ndarray | None = None  # bool per position; None = every chunk is live


class SparseIndex:
    """BM25 over the live chunks of one or more postings parts (a version's segments).

    >>> sparse = SparseIndex.from_texts([1, 2], ["rent is due", "the roof leaks"])
    >>> sparse.search(["roof"], 1)[1].tolist()
    [[2]]
    """

    def __init__(self, parts: Sequence[PostingsPart], config: SparseConfig | None = None) -> None:
        self.config = config or SparseConfig()
        self.parts = [p for p in parts if len(p.postings)]
        self.chunks = sum(len(p.postings) if p.live is None else int(p.live.sum()) for p in self.parts)
        total = 0.0
        for part in self.parts:
            lengths = np.asarray(part.postings.lengths, dtype=np.float64)
            total += part.postings.total_length if part.live is None else float(lengths[part.live].sum())
        self.mean_length = total / self.chunks if self.chunks else 0.0
        self.algorithms = list(dict.fromkeys(a for p in self.parts for a in p.postings.algorithms)) or ["english"]
        self._analyzers: dict[str, Analyzer] = {}
        self.query_model = self.config.load_query_model()
        self.field_prior = self.query_model.field_prior if self.query_model is not None else None

    @classmethod
    def from_texts(cls, chunk_ids: Sequence[int], texts: Sequence[str], config: SparseConfig | None = None,
                   language: str | None = "en") -> SparseIndex:
        """A one-part index over ``texts`` (for tests and small jobs)."""
        config = config or SparseConfig()
        analyzer = config.analyzer(language)
        postings = Postings.from_terms(chunk_ids, [analyzer(t) for t in texts], [stemmer_language(language)])
        return cls([PostingsPart(postings)], config)

    def __len__(self) -> int:
        """Live chunks searched."""
        return self.chunks

    def analyze_query(self, query: str) -> list[str]:
        """Query terms under every stemmer the indexed chunks use (usually one), first-seen order, repeats kept
        from the first, so a query matches a document whatever language that document was detected as."""
        terms = self._analyzer(self.algorithms[0])(query)
        seen = set(terms)
        for algorithm in self.algorithms[1:]:
            extra = [t for t in self._analyzer(algorithm)(query) if t not in seen]
            terms.extend(extra)
            seen.update(extra)
        return terms

    def _analyzer(self, algorithm: str) -> Analyzer:
        analyzer = self._analyzers.get(algorithm)
        if analyzer is None:
            analyzer = self._analyzers[algorithm] = self.config.analyzer(algorithm)
        return analyzer

    def _idf(self, df: int) -> float:
        n = self.chunks
        if self.config.method == "atire":
            return math.log(n / df)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def query_weights(self, query: str) -> dict[str, float]:
        """A query's terms with their weights: how often each occurs in the analysed query, times the learned
        weight of the term when the config names a query model with term weights."""
        weights: dict[str, float] = {}
        for term in self.analyze_query(query):
            weights[term] = weights.get(term, 0.0) + 1.0
        return self.query_model.weigh(weights) if self.query_model is not None else weights

    def search(
        self, queries: Sequence[str | Mapping[str, float]], k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and chunk ids, both (n, k), best first (ties by chunk id); chunks sharing no term with a
        query are left out (score -inf, id -1). ``allowed_ids`` (ascending) restricts the chunks scored.

        A query is text, or already weighted terms (``{term: weight}``, as :meth:`query_weights` gives and
        pseudo-relevance feedback expands): each term's BM25 contribution is multiplied by its weight."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if not self.chunks:
            return scores, ids
        allowed_masks = [self._allowed_mask(p, allowed_ids) for p in self.parts] if allowed_ids is not None else None
        for row, query in enumerate(queries):
            weighted = self.query_weights(query) if isinstance(query, str) else query
            found_scores, found_ids = self._score(weighted, allowed_masks)
            if not len(found_ids):
                continue
            if len(found_ids) > k:
                keep = np.argpartition(-found_scores, k - 1)[:k]
                found_scores, found_ids = found_scores[keep], found_ids[keep]
            order = np.lexsort((found_ids, -found_scores))
            scores[row, : len(order)] = found_scores[order]
            ids[row, : len(order)] = found_ids[order]
        return scores, ids

    @staticmethod
    def _allowed_mask(part: PostingsPart, allowed_ids: np.ndarray) -> np.ndarray:
        chunk_ids = np.asarray(part.postings.chunk_ids)
        allowed = np.asarray(allowed_ids, dtype=np.int64)
        positions = np.searchsorted(chunk_ids, allowed)
        inside = positions < len(chunk_ids)
        positions, allowed = positions[inside], allowed[inside]
        mask = np.zeros(len(chunk_ids), dtype=bool)
        mask[positions[chunk_ids[positions] == allowed]] = True
        return mask

    def _score(self, weighted: Mapping[str, float], allowed_masks: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        unique = [term for term, weight in weighted.items() if weight > 0]
        if not unique:
            return np.empty(0), np.empty(0, dtype=np.int64)
        repeats = np.fromiter((weighted[t] for t in unique), dtype=np.float64, count=len(unique))
        k1, b, avg = float(self.config.k1), float(self.config.b), self.mean_length or 1.0
        # Gather every query term's postings in a part at once (live chunks only); df sums over the parts.
        gathered: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        df = np.zeros(len(unique), dtype=np.int64)
        for i, part in enumerate(self.parts):
            postings = part.postings
            found = [(j, postings.term_index.get(term)) for j, term in enumerate(unique)]
            found = [(j, t) for j, t in found if t is not None]
            if not found:
                continue
            which = np.fromiter((j for j, _ in found), dtype=np.int64, count=len(found))
            local = np.fromiter((t for _, t in found), dtype=np.int64, count=len(found))
            starts, sizes = postings.ptr[local], postings.ptr[local + 1] - postings.ptr[local]
            total = int(sizes.sum())
            if not total:
                continue
            offsets = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(total)  # concatenated ranges
            rows, tf, term_of = postings.rows[offsets], postings.tf[offsets], np.repeat(which, sizes)
            if part.live is not None:
                alive = part.live[rows]
                rows, tf, term_of = rows[alive], tf[alive], term_of[alive]
            df += np.bincount(term_of, minlength=len(unique))
            gathered.append((i, rows, tf, term_of))
        present = df > 0
        idf = np.zeros(len(unique))
        if self.config.method == "atire":
            idf[present] = np.log(self.chunks / df[present])
        else:
            idf[present] = np.log(1 + (self.chunks - df[present] + 0.5) / (df[present] + 0.5))
        weights = repeats * idf
        all_scores, all_ids = [], []
        for i, rows, tf, term_of in gathered:
            postings = self.parts[i].postings
            values = weights[term_of] * self._tf_part(tf.astype(np.float64), postings.lengths[rows].astype(np.float64),
                                                       k1, b, avg)
            if len(rows) * 16 >= len(postings):  # many postings: one dense pass, no sort
                summed = np.bincount(rows, weights=values, minlength=len(postings))
                positions = np.flatnonzero(summed > 0)
                summed = summed[positions]
            else:  # few postings in a large segment: sort them rather than touch every chunk
                positions, inverse = np.unique(rows, return_inverse=True)
                summed = np.bincount(inverse, weights=values, minlength=len(positions))
            keep = summed > 0
            if allowed_masks is not None:
                keep &= allowed_masks[i][positions]
            all_scores.append(summed[keep])
            all_ids.append(postings.chunk_ids[positions[keep]])
        if not all_scores:
            return np.empty(0), np.empty(0, dtype=np.int64)
        return np.concatenate(all_scores), np.concatenate(all_ids)

    def _tf_part(self, tf: np.ndarray, lengths: np.ndarray, k1: float, b: float, avg: float) -> np.ndarray:
        norm = k1 * (1 - b + b * lengths / avg)
        if self.config.method == "atire":
            return tf * (k1 + 1) / (tf + norm)
        return tf / (tf + norm)

    def nbytes(self) -> int:
        return sum(p.postings.nbytes() for p in self.parts)
