"""The lexical side of an index: BM25 (bm25s) over the same chunks the vectors hold, keyed by chunk id.

bm25s builds a static sparse matrix of precomputed term scores, so this index keeps each chunk's
analysed terms (as ids into a term table) and rebuilds the matrix from them when the chunk set has
changed: lazily, before the first search after a change, and before a save. Chunks whose terms it
has not seen in this process (an index just loaded, or one saved before it had a sparse side) are
analysed again from their stored text. Matrix positions follow ascending chunk ids, so a chunk id
maps to its position by binary search.

The matrix, the term table and the position → chunk id map are saved as one ``.npz`` file that the
index directory writes with the same pending / commit / rename protocol as ``vectors.faiss``.
It is derived data: a missing or damaged file is rebuilt from the store, never an error.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import CHINESE_MODES, Analyzer, stemmer_language
from ..documents import Chunk
from ..errors import IndexFormatError, InvalidInputError

logger = logging.getLogger(__name__)

SPARSE_FORMAT_VERSION = 1
# bm25s variants whose scores are never negative (Robertson idf is, for terms in most chunks; BM25L / BM25+
# need a non-occurrence array this file does not keep).
BM25_METHODS = ("lucene", "atire")


@dataclass
class SparseConfig:
    """How chunks are analysed and scored on the lexical side; saved in the manifest with the index settings."""

    enabled: bool = field(default=True, metadata={"help": "Keep a BM25 index beside the vectors (sparse / hybrid search)."})
    headers: bool = field(
        default=True, metadata={"help": "Index each chunk with its document title and section heading in front."}
    )
    k1: float = field(default=1.5, metadata={"help": "BM25 term-frequency saturation (bm25s default)."})
    b: float = field(default=0.75, metadata={"help": "BM25 length normalisation, 0 (none) to 1 (full)."})
    method: str = field(default="lucene", metadata={"help": f"bm25s scoring variant: {', '.join(BM25_METHODS)}."})
    stemming: bool = field(default=True, metadata={"help": "Snowball-stem non-Chinese words in the document's language."})
    stopwords: bool = field(default=True, metadata={"help": "Drop the language's stop words (bm25s lists)."})
    chinese_stopwords: bool = field(default=True, metadata={"help": "Also drop bm25s's 841 Chinese stop words."})
    chinese: str = field(
        default="chars",
        metadata={"help": "Chinese terms: chars (unigrams + bigrams), search (jieba search mode), precise (jieba)."},
    )
    simplified: bool = field(default=True, metadata={"help": "Map traditional Chinese characters to simplified."})

    def __post_init__(self) -> None:
        if self.method not in BM25_METHODS:
            raise InvalidInputError(f"SparseConfig.method={self.method!r} is not one of {', '.join(BM25_METHODS)}")
        if self.chinese not in CHINESE_MODES:
            raise InvalidInputError(f"SparseConfig.chinese={self.chinese!r} is not one of {', '.join(CHINESE_MODES)}")
        if not (isinstance(self.k1, (int, float)) and self.k1 >= 0):
            raise InvalidInputError(f"SparseConfig.k1={self.k1!r} must be a number >= 0")
        if not (isinstance(self.b, (int, float)) and 0 <= self.b <= 1):
            raise InvalidInputError(f"SparseConfig.b={self.b!r} must be between 0 and 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown SparseConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def analysis_key(self) -> dict[str, Any]:
        """The fields that decide a chunk's terms (a saved matrix built with others is rebuilt)."""
        return {k: v for k, v in self.to_dict().items() if k != "enabled"}


class SparseIndex:
    """BM25 over chunk terms with chunk-id keys: add, remove, rebuild, search, save, load.

    Not thread-safe by itself: :class:`~deepseek_rag.DocumentIndex` calls it under its lock.
    """

    def __init__(self, config: SparseConfig | None = None) -> None:
        self.config = config or SparseConfig()
        self._analyzers: dict[str, Analyzer] = {}
        self._term_ids: dict[str, int] = {}  # term → id in this process's term table
        self._terms: list[str] = []
        self._chunk_terms: dict[int, np.ndarray] = {}  # chunk id → term ids (may miss chunks after a load)
        self._bm25: Any = None
        self._chunk_ids = np.empty(0, dtype=np.int64)  # matrix position → chunk id, ascending
        self._algorithms: list[str] = []  # stemmers of the indexed chunks, for analysing queries
        self.stale = True  # the matrix does not reflect the chunk set; rebuild before searching

    # ------------------------------------------------------------------------------------ analysis
    def analyzer(self, language: str | None) -> Analyzer:
        """The analyzer for text in ``language`` (ISO code or Snowball name; None = English rules)."""
        algorithm = stemmer_language(language)
        analyzer = self._analyzers.get(algorithm)
        if analyzer is None:
            c = self.config
            analyzer = self._analyzers[algorithm] = Analyzer(
                language, stemming=c.stemming, stopwords=c.stopwords, chinese_stopwords=c.chinese_stopwords,
                chinese=c.chinese, simplified=c.simplified,
            )
        return analyzer

    def analyze(self, text: str, language: str | None) -> list[str]:
        return self.analyzer(language)(text)

    def analyze_query(self, query: str) -> list[str]:
        """Query terms under every stemmer the indexed chunks use (usually one), first-seen order, repeats kept
        from the first. A query thus matches a document whatever language that document was detected as."""
        algorithms = self._algorithms or ["english"]
        terms = self.analyzer(algorithms[0])(query)
        seen = set(terms)
        for algorithm in algorithms[1:]:
            extra = [t for t in self.analyzer(algorithm)(query) if t not in seen]
            terms.extend(extra)
            seen.update(extra)
        return terms

    def _encode_terms(self, terms: list[str]) -> np.ndarray:
        ids = self._term_ids
        out = np.empty(len(terms), dtype=np.int32)
        for i, term in enumerate(terms):
            term_id = ids.get(term)
            if term_id is None:
                term_id = ids[term] = len(self._terms)
                self._terms.append(term)
            out[i] = term_id
        return out

    # ------------------------------------------------------------------------------------ changes
    def add(self, chunk_ids: Sequence[int], chunk_terms: Sequence[list[str]]) -> None:
        """Record the terms of newly stored chunks (the matrix is rebuilt before the next search)."""
        if len(chunk_ids) != len(chunk_terms):
            raise InvalidInputError(f"{len(chunk_ids)} chunk ids but {len(chunk_terms)} term lists")
        for chunk_id, terms in zip(chunk_ids, chunk_terms):
            self._chunk_terms[int(chunk_id)] = self._encode_terms(terms)
        if len(chunk_ids):
            self.stale = True

    def remove(self, chunk_ids: Iterable[int]) -> None:
        for chunk_id in chunk_ids:
            self._chunk_terms.pop(int(chunk_id), None)
            self.stale = True

    def rebuild(self, batches: Iterable[list[Chunk]], text_of: Callable[[Chunk], str]) -> None:
        """Rebuild the matrix over every chunk in ``batches`` (id order), analysing ``text_of(chunk)`` for
        chunks whose terms are not known yet."""
        bm25s = _import_bm25s()

        chunk_ids: list[int] = []
        per_chunk: list[np.ndarray] = []
        algorithms: dict[str, None] = {}
        analysed = 0
        for batch in batches:
            for chunk in batch:
                language = chunk.metadata.get("language")
                algorithms[stemmer_language(language)] = None
                terms = self._chunk_terms.get(int(chunk.id))
                if terms is None:
                    terms = self._chunk_terms[int(chunk.id)] = self._encode_terms(self.analyze(text_of(chunk), language))
                    analysed += 1
                chunk_ids.append(int(chunk.id))
                per_chunk.append(terms)
        if analysed:
            logger.info("analysed %d chunks for the sparse index", analysed)
        self._chunk_terms = dict(zip(chunk_ids, per_chunk))  # forget chunks that are gone
        self._chunk_ids = np.asarray(chunk_ids, dtype=np.int64)
        if len(self._chunk_ids) > 1 and not np.all(np.diff(self._chunk_ids) > 0):
            order = np.argsort(self._chunk_ids, kind="stable")
            self._chunk_ids = self._chunk_ids[order]
            per_chunk = [per_chunk[i] for i in order]
        self._algorithms = list(algorithms)
        self._bm25 = None
        lengths = np.fromiter((len(t) for t in per_chunk), dtype=np.int64, count=len(per_chunk))
        if lengths.sum() > 0:
            # Number the terms in use 0..V-1 (the term table also holds terms of deleted chunks).
            used, compact = np.unique(np.concatenate(per_chunk), return_inverse=True)
            splits = np.split(compact.astype(np.int32), np.cumsum(lengths)[:-1])
            vocab = {self._terms[t]: i for i, t in enumerate(used.tolist())}
            bm25 = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method)
            bm25.index(([s.tolist() for s in splits], vocab), create_empty_token=False, show_progress=False)
            self._bm25 = bm25
        self.stale = False

    # ------------------------------------------------------------------------------------ search
    def __len__(self) -> int:
        """Chunks in the current matrix."""
        return len(self._chunk_ids)

    def search(
        self, queries: Sequence[str], k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores and chunk ids, both (n, k), best first; chunks sharing no term with a query are left
        out (score -inf, id -1), so a query with no terms after analysis finds nothing."""
        if self.stale:
            raise InvalidInputError("the sparse index changed since it was built; call rebuild() first")
        n = len(queries)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        if self._bm25 is None:
            return scores, ids
        mask = None
        if allowed_ids is not None:
            allowed = np.asarray(allowed_ids, dtype=np.int64)
            positions = np.searchsorted(self._chunk_ids, allowed)
            positions = positions[positions < len(self._chunk_ids)]
            positions = positions[np.isin(self._chunk_ids[positions], allowed)]
            mask = np.zeros(len(self._chunk_ids), dtype=bool)
            mask[positions] = True
        vocab = self._bm25.vocab_dict
        for row, query in enumerate(queries):
            term_ids = [vocab[t] for t in self.analyze_query(query) if t in vocab]
            if not term_ids:
                continue
            row_scores = self._bm25.get_scores_from_ids(term_ids)
            if mask is not None:
                row_scores = np.where(mask, row_scores, 0)
            hits = np.flatnonzero(row_scores > 0)
            if len(hits) > k:
                hits = hits[np.argpartition(-row_scores[hits], k - 1)[:k]]
            hits = hits[np.lexsort((hits, -row_scores[hits]))]  # best first, ties by chunk id
            scores[row, : len(hits)] = row_scores[hits]
            ids[row, : len(hits)] = self._chunk_ids[hits]
        return scores, ids

    # ------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the built matrix to one file at ``path`` (fsynced); rebuild first if it is stale."""
        if self.stale:
            raise InvalidInputError("the sparse index changed since it was built; call rebuild() first")
        bm25 = self._bm25
        meta = {
            "format_version": SPARSE_FORMAT_VERSION,
            "config": self.config.analysis_key(),
            "algorithms": self._algorithms,
            "chunks": len(self._chunk_ids),
        }
        empty_i = np.empty(0, dtype=np.int32)
        vocab = sorted(bm25.vocab_dict, key=bm25.vocab_dict.get) if bm25 is not None else []
        arrays = {
            "meta": _json_bytes(meta),
            "vocab": _json_bytes(vocab),
            "chunk_ids": self._chunk_ids,
            "data": bm25.scores["data"] if bm25 is not None else np.empty(0, dtype=np.float32),
            "indices": bm25.scores["indices"] if bm25 is not None else empty_i,
            "indptr": bm25.scores["indptr"] if bm25 is not None else empty_i,
        }
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: str | Path, config: SparseConfig) -> SparseIndex:
        """Read a file written by :meth:`save`; one written with other analysis settings comes back stale."""
        bm25s = _import_bm25s()

        index = cls(config)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes())
                if meta.get("format_version") != SPARSE_FORMAT_VERSION:
                    raise IndexFormatError(
                        f"{path} has sparse format {meta.get('format_version')!r}; this library reads "
                        f"{SPARSE_FORMAT_VERSION}. Upgrade deepseek-rag, or delete the file to rebuild it."
                    )
                vocab = json.loads(data["vocab"].tobytes())
                chunk_ids = data["chunk_ids"].astype(np.int64)
                scores = {"data": data["data"], "indices": data["indices"], "indptr": data["indptr"]}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"{path} is not a readable sparse index ({exc}); delete it to rebuild it") from exc
        if meta.get("config") != config.analysis_key():
            logger.info("%s was built with other sparse settings; it will be rebuilt", path)
            return index
        index._chunk_ids = chunk_ids
        index._algorithms = list(meta.get("algorithms") or [])
        if vocab:
            bm25 = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
            bm25.scores = {**scores, "num_docs": len(chunk_ids)}
            bm25.vocab_dict = {term: i for i, term in enumerate(vocab)}
            bm25.nonoccurrence_array = None
            index._bm25 = bm25
        index.stale = False
        return index

    def nbytes(self) -> int:
        """Bytes held by the matrix (the saved file is about this size plus the term table)."""
        if self._bm25 is None:
            return 0
        return int(sum(a.nbytes for a in (self._bm25.scores["data"], self._bm25.scores["indices"], self._bm25.scores["indptr"])))


def _json_bytes(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


SPARSE_NAME = "sparse.npz"


def settle_sparse_file(folder: Path, expected_checksum: str | None) -> Path | None:
    """The sparse file that matches the committed store, finishing an interrupted save; None when there is
    none to trust (an index saved before it had a sparse side, or a damaged file): it is rebuilt from the store."""
    from ..storage.layout import PENDING_SUFFIX, file_checksum, fsync_path

    current = folder / SPARSE_NAME
    pending = folder / (SPARSE_NAME + PENDING_SUFFIX)
    if expected_checksum is not None and current.is_file() and file_checksum(current) == expected_checksum:
        if pending.exists():
            pending.unlink()  # a save that never committed
        return current
    if expected_checksum is not None and pending.is_file() and file_checksum(pending) == expected_checksum:
        os.replace(pending, current)  # a save that committed but did not finish its rename
        fsync_path(folder)
        return current
    if expected_checksum is not None:
        logger.warning("%s is missing or does not match chunks.sqlite; the sparse index is rebuilt from the store", current)
    return None


def _import_bm25s():
    """Import bm25s, undoing the DEBUG level it forces on its logger so it follows the app's logging."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s
