"""Training pairs: read them (JSONL, CSV/TSV, BEIR qrels + corpus), check them, dedupe, split off a dev set.

A pair is a query, one passage that answers it, and optionally passages that do not (negatives). Every
reader reports a bad row by file and line number as :class:`deepseek_rag.InvalidInputError`. This module
does not mine negatives (``mining.py``) or invent pairs (``cold_start.py``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepseek_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)

TSV_SUFFIXES = (".tsv", ".tab")


@dataclass
class TrainingPair:
    """A query, a passage that answers it, and passages that do not (may be empty)."""

    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"query": self.query, "positive": self.positive}
        if self.negatives:
            data["negatives"] = list(self.negatives)
        return data


def _pair_from_row(row: dict, where: str) -> TrainingPair:
    if not isinstance(row, dict):
        raise InvalidInputError(f"{where}: expected an object with 'query' and 'positive', got {type(row).__name__}")
    for key in ("query", "positive"):
        if key not in row:
            raise InvalidInputError(f"{where}: missing field {key!r} (each row needs 'query' and 'positive')")
        if not isinstance(row[key], str) or not row[key].strip():
            raise InvalidInputError(f"{where}: empty {key!r}; every pair needs a non-empty query and positive")
    negatives = row.get("negatives")
    if negatives is None:
        negatives = [row["negative"]] if row.get("negative") not in (None, "") else []
    elif isinstance(negatives, str):
        negatives = [negatives]
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise InvalidInputError(f"{where}: 'negatives' must be a list of strings")
    negatives = [n.strip() for n in negatives if n.strip()]
    return TrainingPair(row["query"].strip(), row["positive"].strip(), negatives)


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed row) of each non-blank line of a JSON-lines file; malformed JSON is an error naming
    the file and line."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path} line {number}: malformed JSON: {exc.msg} (column {exc.colno})") from None


def read_jsonl_pairs(path: str | Path) -> list[TrainingPair]:
    """``{"query", "positive", "negative"? | "negatives"?}`` per line; blank lines are skipped."""
    return [_pair_from_row(row, f"{path} line {number}") for number, row in jsonl_rows(path)]


def read_table_pairs(path: str | Path) -> list[TrainingPair]:
    """CSV (or TSV by suffix) with a header ``query,positive[,negative]``."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() in TSV_SUFFIXES else ","
    pairs: list[TrainingPair] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        if "query" not in header or "positive" not in header:
            raise InvalidInputError(f"{path}: the header must name 'query' and 'positive' columns, found {header}")
        for row in reader:
            row = {(k or "").strip(): (v or "") for k, v in row.items() if k is not None}
            if not any(v.strip() for v in row.values()):
                continue
            pairs.append(_pair_from_row(row, f"{path} line {reader.line_num}"))
    return pairs


def read_beir_pairs(folder: str | Path, split: str = "train") -> list[TrainingPair]:
    """One pair per judged-relevant (query, document) of ``qrels/<split>.tsv``; positive = title + " " + text."""
    from deepseek_rag.evaluation import load_beir_split
    from deepseek_rag.ingest.loaders import load_beir_corpus

    judged = load_beir_split(folder, split)
    corpus = {doc.id: doc for doc in load_beir_corpus(folder)}
    pairs: list[TrainingPair] = []
    missing = 0
    for qid, docs in judged.qrels.items():
        for doc_id, grade in docs.items():
            doc = corpus.get(doc_id)
            if grade <= 0:
                continue
            if doc is None:
                missing += 1
                continue
            pairs.append(TrainingPair(judged.queries[qid], passage_text(doc.title, doc.text)))
    if missing:
        logger.warning("%d judged documents of split %r are not in the corpus; skipped", missing, split)
    return pairs


def passage_text(title: str | None, text: str) -> str:
    """How a titled document reads as a training passage: ``title + " " + text``."""
    return f"{title.strip()} {text}".strip() if title and title.strip() else text.strip()


def load_pairs(path: str | Path) -> list[TrainingPair]:
    """Read pairs from a ``.jsonl``, ``.csv`` or ``.tsv`` file (by suffix)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"pairs file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        pairs = read_jsonl_pairs(path)
    elif suffix in (".csv", *TSV_SUFFIXES):
        pairs = read_table_pairs(path)
    else:
        raise InvalidInputError(f"pairs file {path} must be .jsonl, .csv or .tsv, got {suffix or 'no suffix'!r}")
    if not pairs:
        raise InvalidInputError(f"pairs file {path} holds no pairs")
    return pairs


def deduplicate(pairs: Iterable[TrainingPair]) -> list[TrainingPair]:
    """Drop repeated (query, positive) pairs, keeping the first and merging the negatives of the repeats."""
    kept: dict[tuple[str, str], TrainingPair] = {}
    seen = 0
    for pair in pairs:
        seen += 1
        key = (" ".join(pair.query.split()).lower(), " ".join(pair.positive.split()))
        if key in kept:
            merged = kept[key].negatives
            merged.extend(n for n in pair.negatives if n not in merged)
        else:
            kept[key] = TrainingPair(pair.query, pair.positive, list(pair.negatives))
    if seen > len(kept):
        logger.info("dropped %d duplicate pairs", seen - len(kept))
    return list(kept.values())


def is_dev_query(query: str, fraction: float) -> bool:
    """Deterministic: a query's hash decides, so all its pairs land on the same side, on every machine."""
    if fraction <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(" ".join(query.split()).lower().encode()).digest()[:8], "big")
    return bucket / 2**64 < fraction


def split_dev(pairs: Sequence[TrainingPair], fraction: float = 0.1) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(train, dev) by query hash; an empty dev set when ``fraction`` is 0."""
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"dev fraction {fraction!r} must be in [0, 1)")
    train = [p for p in pairs if not is_dev_query(p.query, fraction)]
    dev = [p for p in pairs if is_dev_query(p.query, fraction)]
    if not train:
        raise InvalidInputError(f"dev fraction {fraction} left no training pairs; lower it")
    return train, dev


def write_jsonl_pairs(pairs: Iterable[TrainingPair], path: str | Path) -> Path:
    """Write pairs in the JSONL format :func:`load_pairs` reads."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.to_dict(), ensure_ascii=False) + "\n")
    return path
