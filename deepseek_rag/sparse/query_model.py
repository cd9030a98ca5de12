"""A learned query model for the BM25 side: query-term weights and a field prior, fitted on training pairs.

BM25 weighs a query term by its rarity among the documents, which misjudges the words of people asking:
patients' questions are full of words their doctors' answers never repeat (想问, 怎么回事, 该怎么办), and the
answer's department is never named. Fitted once on (question, relevant document) pairs, under the index's own
analysis, a :class:`QueryModel` holds

- ``term_weights`` (:mod:`.term_weights`): a weight per query term multiplying its BM25 contribution;
- ``field_prior`` (:mod:`.field_prior`): ``weight · log P(document's metadata[key] | query)`` added to each
  candidate chunk's score.

It is a JSON file. ``SparseConfig(query_model=PATH)`` (or ``deepseek-rag fit-sparse INDEX --beir DATA``, which
fits one and publishes it as the index's next version) makes sparse and hybrid searches use it. The index
records the file's checksum and the analysis it was fitted under: a changed or missing file, or a model fitted
under other analysis settings, is a clear error rather than silently different scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .field_prior import FieldPrior
from .term_weights import TermWeights

FORMAT_VERSION = 1
PRIOR_DEPTH = 100
"""Candidates a field prior re-scores per query (BM25's best; the prior moves documents within them)."""

_cache: dict[tuple[str, str], QueryModel] = {}
_lock = threading.Lock()


class QueryModel:
    """Query-term weights and/or a field prior, fitted under ``analysis`` (``SparseConfig.scoring_key()``)."""

    def __init__(self, analysis: Mapping[str, Any], term_weights: TermWeights | None = None,
                 field_prior: FieldPrior | None = None, fitted_on: Mapping[str, Any] | None = None) -> None:
        if term_weights is None and field_prior is None:
            raise InvalidInputError("a query model needs term weights, a field prior, or both")
        self.analysis = dict(analysis)
        self.term_weights, self.field_prior = term_weights, field_prior
        self.fitted_on = dict(fitted_on or {})

    def weigh(self, query: Mapping[str, float]) -> dict[str, float]:
        """``{term: count}`` → ``{term: count · learned weight}`` (unchanged without term weights)."""
        return self.term_weights.apply(query) if self.term_weights is not None else dict(query)

    # ------------------------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        weights = self.term_weights
        return {
            "format_version": FORMAT_VERSION, "analysis": self.analysis, "fitted_on": self.fitted_on,
            "term_weights": None if weights is None else {
                "weights": {t: round(w, 6) for t, w in weights.weights.items()},
                "default_by_length": {str(n): w for n, w in weights.default_by_length.items()}},
            "field_prior": None if self.field_prior is None else self.field_prior.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "query model") -> QueryModel:
        if data.get("format_version") != FORMAT_VERSION:
            raise InvalidInputError(f"{source} has format {data.get('format_version')!r}; this library reads "
                                    f"{FORMAT_VERSION}: fit it again with `deepseek-rag fit-sparse`")
        try:
            raw = data.get("term_weights")
            weights = None if raw is None else TermWeights(
                {str(t): float(w) for t, w in raw["weights"].items()},
                {int(n): float(w) for n, w in raw["default_by_length"].items()})
            prior = None if data.get("field_prior") is None else FieldPrior.from_dict(data["field_prior"])
            return cls(data["analysis"], weights, prior, data.get("fitted_on"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"{source} is not a query model written by this library ({exc!r}); "
                                    "fit it again with `deepseek-rag fit-sparse`") from None

    def save(self, path: str | Path) -> str:
        """Write the model to ``path`` atomically (a temporary file beside it, fsync, rename); returns its checksum."""
        target = Path(path)
        data = json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return _checksum(data)


def query_model_checksum(path: str | Path) -> str:
    """sha256 of a query model file's bytes (what an index records, to refuse a file that changed)."""
    return _checksum(_read(path))


def load_query_model(path: str | Path, checksum: str | None = None, analysis: Mapping[str, Any] | None = None) -> QueryModel:
    """The model in ``path`` (parsed once per content and shared), checked against the ``checksum`` and the
    ``analysis`` an index recorded for it."""
    data = _read(path)
    found = _checksum(data)
    if checksum is not None and found != checksum:
        raise InvalidInputError(f"query model {str(path)!r} changed since the index recorded it (sha256 {found[:12]}…, "
                                f"recorded {checksum[:12]}…); attach it again (`deepseek-rag fit-sparse INDEX "
                                "--model-file FILE --attach-only`) or restore the file")
    key = (str(Path(path).resolve()), found)
    with _lock:
        model = _cache.get(key)
    if model is None:
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"query model {str(path)!r} is not JSON ({exc}); fit it again") from None
        if not isinstance(parsed, dict):
            raise InvalidInputError(f"query model {str(path)!r} is not a JSON object; fit it again")
        model = QueryModel.from_dict(parsed, f"query model {str(path)!r}")
        with _lock:
            _cache[key] = model
    if analysis is not None and model.analysis != dict(analysis):
        raise InvalidInputError(f"query model {str(path)!r} was fitted under other BM25 settings ({model.analysis}) "
                                f"than this index's ({dict(analysis)}); fit it again on this index")
    return model


def fit_query_model(index: Any, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], *,
                    term_weights: bool = True, field: str | None = None, prior_weight: float = 0.5) -> QueryModel:
    """Fit a model on the training pairs ``queries``/``qrels`` (BEIR style: every positive judgement is a pair),
    under the analysis of ``index`` (a :class:`deepseek_rag.DocumentIndex`): documents are analysed from their
    chunks as the index analyses them (title header included), questions as it analyses queries.

    ``field``: fit a field prior on that metadata key too (every judged document must hold a text value for it),
    scaled by ``prior_weight`` (0.5 was best on cmd_im_sample's dev split).
    Judgements of documents the index does not hold are skipped; none left is an error."""
    from .term_weights import fitted_term_weights

    snapshot = index.snapshot()
    config = index.settings.sparse
    sparse = snapshot.sparse
    documents: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for batch in snapshot.iter_chunks():
        for chunk in batch:
            title = chunk.metadata.get("title")
            documents.setdefault(chunk.doc_id, []).extend(
                sparse.analyze_query(index.sparse_text(chunk, str(title) if title else None)))
            if field is not None:
                values.setdefault(chunk.doc_id, chunk.metadata.get(field))
    position = {doc: i for i, doc in enumerate(documents)}
    term_lists = list(documents.values())
    pairs: list[tuple[list[str], int]] = []
    labels: list[str] = []
    for qid, text in queries.items():
        for doc, grade in qrels.get(qid, {}).items():
            if grade > 0 and doc in position:
                pairs.append((sparse.analyze_query(text), position[doc]))
                if field is not None:
                    value = values[doc]
                    if not isinstance(value, str) or not value:
                        raise InvalidInputError(f"field prior on {field!r}: document {doc!r} holds {value!r}, not a text "
                                                f"value; give a metadata key every judged document has")
                    labels.append(value)
    if not pairs:
        raise InvalidInputError("none of the training judgements names a document of this index; fit on the split "
                                "of the corpus the index holds")
    weights = fitted_term_weights(pairs, term_lists, k1=config.k1, b=config.b) if term_weights else None
    prior = FieldPrior.fit([q for q, _ in pairs], labels, field, weight=prior_weight) if field is not None else None
    return QueryModel(config.scoring_key(), weights, prior,
                      {"pairs": len(pairs), "documents": len(term_lists), "field": field})


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"query model {str(path)!r} does not exist; fit one with `deepseek-rag fit-sparse` "
                                "or leave SparseConfig.query_model unset") from None
    except OSError as exc:
        raise InvalidInputError(f"query model {str(path)!r} cannot be read ({exc.strerror or exc})") from None


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
