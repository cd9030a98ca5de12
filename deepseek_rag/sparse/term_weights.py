"""Query-term weights learned from training question → answer pairs (a :class:`.query_model.QueryModel` part).

Patients' questions are full of words their doctors' answers never repeat (想问, 怎么回事, 我妈, 该怎么办), and BM25
weighs them by their rarity in the answers, which is high. Two ways to learn from the training pairs how much each
analysed query term predicts the relevant answer, both giving a weight per term that multiplies the term's BM25
contribution (unseen terms fall back to a default):

- **term recall** (Zhao & Callan 2010's P(t | R)): of the training questions holding term ``t``, the share whose
  relevant answer holds it too, smoothed toward the mean share with ``alpha`` pseudo-questions; the weight is
  ``(recall / mean recall) ** gamma`` (unseen terms: 1.0).
- **fitted** (what ``deepseek-rag fit-sparse`` uses): ``exp(beta · features(t))`` over a few features of the term
  (log smoothed recall, log of how much more often it occurs in questions than in answers, length class, log
  question frequency), ``beta`` fitted by a softmax (listwise) loss of the relevant answer against BM25's top
  answers and random ones, in a few rounds with the negatives mined again under the current weights. The training
  questions' own features leave the question out (leave-one-out), else a term seen once would look perfectly
  predictive. Fitting needs torch and scipy; applying the weights needs neither.

Both read documents and questions as term lists (the index's analyser); ``benchmarks/chinese_lexical.py`` measures
them on cmd_im_sample without touching its test split.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


class TermWeights:
    """A weight per query term: ``weights[t]``, else ``default_by_length`` (1, 2, 3 = three or more characters)."""

    def __init__(self, weights: dict[str, float], default_by_length: dict[int, float] | None = None) -> None:
        self.weights = weights
        self.default_by_length = default_by_length or {1: 1.0, 2: 1.0, 3: 1.0}

    def of(self, term: str) -> float:
        found = self.weights.get(term)
        return found if found is not None else self.default_by_length[min(len(term), 3)]

    def apply(self, query: dict[str, float]) -> dict[str, float]:
        """``{term: count}`` → ``{term: count · weight}``."""
        return {term: count * self.of(term) for term, count in query.items()}


def _question_stats(pairs: Sequence[tuple[list[str], list[str]]]) -> tuple[Counter, Counter, float]:
    asked, recalled = Counter(), Counter()
    for question, answer in pairs:
        answer_terms = set(answer)
        for term in set(question):
            asked[term] += 1
            recalled[term] += term in answer_terms
    mean = sum(recalled.values()) / max(1, sum(asked.values()))
    return asked, recalled, mean


def term_recall_weights(pairs: Sequence[tuple[list[str], list[str]]], alpha: float = 30.0, gamma: float = 0.5) -> TermWeights:
    """Smoothed term recall over ``pairs`` of (question terms, relevant answer terms), relative to the mean."""
    asked, recalled, mean = _question_stats(pairs)
    return TermWeights({t: (((recalled[t] + alpha * mean) / (n + alpha)) / mean) ** gamma for t, n in asked.items()})


class _Corpus:
    """BM25 term parts of every document as one sparse matrix (documents × terms), lucene idf."""

    def __init__(self, documents: Sequence[list[str]], k1: float, b: float) -> None:
        import scipy.sparse as sp

        self.vocab: dict[str, int] = {}
        rows, cols, counts = [], [], []
        lengths = np.zeros(len(documents))
        for i, terms in enumerate(documents):
            lengths[i] = len(terms)
            for term, count in Counter(terms).items():
                rows.append(i)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                counts.append(count)
        tf = np.asarray(counts, dtype=np.float64)
        norm = k1 * (1 - b + b * lengths[rows] / max(lengths.mean(), 1e-9))
        self.parts = sp.csr_matrix((tf / (tf + norm), (rows, cols)), shape=(len(documents), len(self.vocab)))
        self.n = len(documents)
        self.df = np.bincount(cols, minlength=len(self.vocab)).astype(np.float64)
        self.idf = np.log(1 + (self.n - self.df + 0.5) / (self.df + 0.5))

    def query_matrix(self, queries: Sequence[list[str]], weigh):  # -> scipy.sparse.csr_matrix
        import scipy.sparse as sp

        rows, cols, values = [], [], []
        for i, terms in enumerate(queries):
            for term, count in Counter(terms).items():
                j = self.vocab.get(term)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    values.append(count * weigh(i, term) * self.idf[j])
        return sp.csr_matrix((values, (rows, cols)), shape=(len(queries), len(self.vocab)))

    def scores(self, queries) -> np.ndarray:
        return (queries @ self.parts.T).toarray()


def fitted_term_weights(
    pairs: Sequence[tuple[list[str], int]], documents: Sequence[list[str]], *, k1: float, b: float,
    negatives: int = 100, rounds: int = 3, steps: int = 100, alpha: float = 10.0, seed: int = 0,
) -> TermWeights:
    """Weights ``exp(beta · features)`` fitted on ``pairs`` of (question terms, index of its relevant document in
    ``documents``) so that the relevant document ranks first under BM25(k1, b) with weighted query terms."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    corpus = _Corpus(documents, k1, b)
    asked, recalled, mean = _question_stats([(q, documents[d]) for q, d in pairs])
    questions = len(pairs)

    def features(term: str, n: int, hits: int) -> list[float]:
        j = corpus.vocab[term]
        ratio = math.log(n / questions) - math.log((corpus.df[j] + 1) / corpus.n) if n > 0 else 0.0
        length = min(len(term), 3)
        return [math.log((hits + alpha * mean) / (n + alpha)), ratio, float(length == 1), float(length == 2),
                float(length == 3), math.log(1 + n)]

    # one row per (training question, distinct term in the corpus), features left-one-out, in the order of the
    # question's row of ``counted`` (CSR keeps a row's columns sorted: the loss below reads them in that order)
    question_terms = [q for q, _ in pairs]
    counted = corpus.query_matrix(question_terms, lambda i, t: 1.0).tocsr()
    term_of = list(corpus.vocab)  # vocabulary ids in order
    pair_features = []
    for i, (_, relevant) in enumerate(pairs):
        answer = set(documents[relevant])
        for j in counted.indices[counted.indptr[i]:counted.indptr[i + 1]]:
            t = term_of[j]
            pair_features.append(features(t, asked[t] - 1, recalled[t] - (t in answer)))
    if not pair_features:
        return TermWeights({})
    x = torch.tensor(pair_features, dtype=torch.float32)
    beta = torch.zeros(x.shape[1], requires_grad=True)
    optimiser = torch.optim.Adam([beta], lr=0.05)
    plain = corpus.scores(counted)
    depth = max(1, min(negatives, corpus.n - 1))

    def current(term: str) -> float:
        return math.exp(float(np.dot(features(term, asked.get(term, 0), recalled.get(term, 0)), beta.detach().numpy())))

    for round_ in range(rounds):
        mined = [plain] if round_ == 0 else [plain, corpus.scores(corpus.query_matrix(question_terms, lambda i, t: current(t)))]
        entries, pair_of, values, width = [], [], [], 1 + depth * 2
        offset = 0
        for i, (_, relevant) in enumerate(pairs):
            chosen, seen = [relevant], {relevant}
            for scores in mined:  # each ranking's top ``depth`` answers not taken yet
                top = [int(d) for d in np.argsort(-scores[i], kind="stable")[: depth + 1] if int(d) not in seen][:depth]
                chosen.extend(top)
                seen.update(top)
            while len(chosen) < width and len(seen) < corpus.n:  # random answers fill up: the far end of the corpus
                d = int(rng.integers(corpus.n))
                if d not in seen:
                    seen.add(d)
                    chosen.append(d)
            chosen += [relevant] * (width - len(chosen))  # a tiny corpus: repeat the positive (no effect on the loss's optimum)
            row = counted.getrow(i)
            sub = corpus.parts[chosen][:, row.indices].tocoo()
            entries.append(i * width + sub.row)
            pair_of.append(offset + sub.col)
            values.append(sub.data * row.data[sub.col])
            offset += len(row.indices)
        entries_t = torch.tensor(np.concatenate(entries))
        pair_t = torch.tensor(np.concatenate(pair_of))
        values_t = torch.tensor(np.concatenate(values), dtype=torch.float32)
        target = torch.zeros(questions, dtype=torch.long)
        for _ in range(steps):
            optimiser.zero_grad()
            weight = torch.exp(x @ beta)
            scores = torch.zeros(questions * width).index_add_(0, entries_t, weight[pair_t] * values_t).view(questions, width)
            loss = torch.nn.functional.cross_entropy(scores, target)
            loss.backward()
            optimiser.step()
    weights = {t: current(t) for t in asked if t in corpus.vocab}
    unseen = {length: math.exp(float(np.dot([math.log(mean), 0.0, float(length == 1), float(length == 2),
                                              float(length == 3), 0.0], beta.detach().numpy())))
              for length in (1, 2, 3)}
    return TermWeights(weights, unseen)
