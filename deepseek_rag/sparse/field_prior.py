"""A field prior: which value of a metadata field the answer's document holds, predicted from the query's terms.

Documents often carry a category the query never names: a medical answer's department (肝病科, 消化科), a
product's category, a contract's area of law. A patient's "吃了药还是胃疼" shares few words with the answer that
helps, but it is plainly a question for 消化科, and BM25's near misses from 肝病科 are usually wrong. Learned from
training pairs — (question terms, the value the relevant document holds) — a multinomial logistic regression
(scikit-learn's ``LogisticRegression`` over sublinear tf·idf of the analysed query terms, L2-normalised, as
``TfidfVectorizer(sublinear_tf=True)`` weighs them) gives ``P(value | query)``, and each BM25 candidate gains
``weight · log P(its value | query)`` (shifted so the least likely value adds 0: BM25 scores stay positive).

Fitting needs scikit-learn; applying it is numpy over the stored coefficients (JSON), so a served index does not.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError

FLOOR = 1e-4
"""Smallest probability a value is given: a confident classifier cannot push a document down without bound."""


class FieldPrior:
    """``P(metadata[key] == value | query terms)`` over ``values``, and the score boost it gives candidates."""

    def __init__(self, key: str, values: Sequence[str], idf: dict[str, float], coefficients: dict[str, Sequence[float]],
                 intercept: Sequence[float], weight: float = 1.0) -> None:
        if not values:
            raise InvalidInputError("a field prior needs at least one value")
        if len(intercept) != len(values) or any(len(c) != len(values) for c in coefficients.values()):
            raise InvalidInputError("field prior: every coefficient row and the intercept need one number per value")
        self.key, self.values, self.weight = key, list(values), float(weight)
        self.idf = dict(idf)
        self.coefficients = {t: np.asarray(c, dtype=np.float64) for t, c in coefficients.items()}
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self._position = {v: i for i, v in enumerate(self.values)}

    @classmethod
    def fit(cls, questions: Sequence[Sequence[str]], labels: Sequence[str], key: str, *, weight: float = 1.0,
            c: float = 4.0, min_questions: int = 2) -> FieldPrior:
        """Fit on ``questions`` (analysed terms) whose relevant documents hold ``labels`` as ``metadata[key]``.
        Terms in fewer than ``min_questions`` questions are left out; ``c`` is the inverse L2 strength."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(questions) != len(labels):
            raise InvalidInputError(f"{len(questions)} questions but {len(labels)} labels")
        values = sorted(set(labels))
        if len(values) < 2:
            raise InvalidInputError(f"field prior on {key!r}: the training pairs' documents hold "
                                    f"{len(values)} value(s); a prior needs at least two to tell apart")
        vectorizer = TfidfVectorizer(analyzer=list, sublinear_tf=True, min_df=min_questions)
        x = vectorizer.fit_transform([list(q) for q in questions])
        model = LogisticRegression(C=c, max_iter=2000).fit(x, [values.index(v) for v in labels])
        vocab = vectorizer.get_feature_names_out()
        coefficients, intercept = model.coef_.T, model.intercept_  # (terms, values), (values,)
        if len(values) == 2:  # a binary model gives the second value's logit: softmax over (0, logit) is the same
            coefficients = np.hstack([np.zeros_like(coefficients), coefficients])
            intercept = np.array([0.0, float(intercept[0])])
        return cls(key, values, dict(zip(vocab, vectorizer.idf_.tolist())),
                   {t: row.tolist() for t, row in zip(vocab, coefficients)}, intercept.tolist(), weight)

    def log_probs(self, terms: Sequence[str]) -> np.ndarray:
        """log P(value | query) for every value, from the query's analysed ``terms``."""
        counts = Counter(t for t in terms if t in self.idf)
        logits = self.intercept.copy()
        if counts:
            weights = {t: (1.0 + math.log(n)) * self.idf[t] for t, n in counts.items()}
            norm = math.sqrt(sum(w * w for w in weights.values()))
            for term, w in weights.items():
                logits += (w / norm) * self.coefficients[term]
        logits -= logits.max()
        probs = np.exp(logits)
        return np.log(np.maximum(probs / probs.sum(), FLOOR))

    def boosts(self, terms: Sequence[str], values: Sequence[Any]) -> np.ndarray:
        """What each candidate (holding ``values[i]``, None when it has none) adds to its BM25 score: ``weight ·
        (log P(value) - log FLOOR)``, 0 for a value never seen in training or a missing one."""
        log_probs = self.log_probs(terms) - math.log(FLOOR)
        index = np.fromiter((self._position.get(v, -1) if isinstance(v, str) else -1 for v in values), dtype=np.int64,
                            count=len(values))
        return np.where(index >= 0, self.weight * log_probs[np.maximum(index, 0)], 0.0)

    def rescore(self, terms: Sequence[str], scores: np.ndarray, ids: np.ndarray,
                values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 ``scores`` of candidates ``ids`` (holding ``values``) plus their boosts, re-sorted best first (ties
        by id)."""
        boosted = np.asarray(scores, dtype=np.float64) + self.boosts(terms, values)
        order = np.lexsort((np.asarray(ids), -boosted))
        return boosted[order].astype(np.float32), np.asarray(ids)[order]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "values": self.values, "weight": self.weight, "idf": self.idf,
                "coefficients": {t: [round(float(x), 6) for x in c] for t, c in self.coefficients.items()},
                "intercept": self.intercept.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldPrior:
        return cls(data["key"], data["values"], data["idf"], data["coefficients"], data["intercept"], data.get("weight", 1.0))
