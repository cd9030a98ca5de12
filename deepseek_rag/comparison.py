"""Offline comparison of two retrievers on the same judged queries: per-query paired differences and tests.

For each metric: both means, the mean paired difference (B − A) with a 95% bootstrap confidence interval
(``scipy.stats.bootstrap``, BCa, 10,000 resamples, seeded), a paired randomization test (``scipy.stats
.permutation_test`` with ``permutation_type="samples"``: each query's pair is swapped or not, 10,000 resamples,
two-sided) and a paired t-test (``scipy.stats.ttest_rel``), and the share of queries where B wins, ties and
loses. The metrics themselves are ``evaluation.py``'s (checked against pytrec_eval in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .evaluation import Qrels, Run, per_query

RESAMPLES = 10_000


def paired_comparison(run_a: Run, run_b: Run, qrels: Qrels, metrics: Sequence[str], *, seed: int = 0) -> dict[str, Any]:
    """A/B figures for each of ``metrics`` (``"ndcg@10"``...) over the judged queries of ``qrels``."""
    from scipy import stats

    out: dict[str, Any] = {"queries": len(qrels), "metrics": {}}
    for metric in metrics:
        a, b = per_query(run_a, qrels, metric), per_query(run_b, qrels, metric)
        qids = sorted(qrels)
        x, y = np.array([a[q] for q in qids]), np.array([b[q] for q in qids])
        diff = y - x
        row: dict[str, Any] = {"a": round(float(x.mean()), 5), "b": round(float(y.mean()), 5),
                               "difference": round(float(diff.mean()), 5)}
        if np.allclose(diff, 0):
            row.update({"ci95": [0.0, 0.0], "p_randomization": 1.0, "p_t_test": 1.0})
        else:
            rng = np.random.default_rng(seed)
            boot = stats.bootstrap((diff,), np.mean, n_resamples=RESAMPLES, confidence_level=0.95, method="BCa",
                                   random_state=rng)
            row["ci95"] = [round(float(boot.confidence_interval.low), 5), round(float(boot.confidence_interval.high), 5)]
            test = stats.permutation_test((x, y), lambda u, v: np.mean(v - u), permutation_type="samples",
                                          n_resamples=RESAMPLES, alternative="two-sided", random_state=np.random.default_rng(seed))
            row["p_randomization"] = round(float(test.pvalue), 5)
            row["p_t_test"] = round(float(stats.ttest_rel(y, x).pvalue), 5)
        row["wins"] = round(float(np.mean(diff > 1e-12)), 4)
        row["ties"] = round(float(np.mean(np.abs(diff) <= 1e-12)), 4)
        row["losses"] = round(float(np.mean(diff < -1e-12)), 4)
        out["metrics"][metric] = row
    return out
