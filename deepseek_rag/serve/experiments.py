"""The online side of an A/B test: which arm answered each request, the feedback users give, and the report.

Every answered request is remembered (bounded: the newest ``max_requests``) with its arm, so a later
``POST /v1/feedback {request_id, signal}`` counts for the right arm. The report compares each arm with the default
on the *helpful share* — helpful / (helpful + unhelpful) — with a two-proportion z-test (pooled standard error for
the p-value, unpooled for the 95% confidence interval of the difference), and says how many rated requests per arm
a test needs to detect ``min_effect`` at α = 0.05 with 80% power. Latency percentiles per arm come from the last
10,000 requests of each. scipy supplies the normal distribution; the formulas are the textbook ones.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIGNALS = ("click", "helpful", "unhelpful")


@dataclass
class ArmStats:
    requests: int = 0
    feedback: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SIGNALS})
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    shadow_requests: int = 0
    shadow_errors: int = 0


class Experiment:
    """Request → arm memory, per-arm counters, and the report (thread-safe)."""

    def __init__(self, arms: list[str], default: str, *, min_effect: float, max_requests: int = 200_000) -> None:
        self.default = default
        self.min_effect = min_effect
        self._stats = {name: ArmStats() for name in arms}
        self._requests: OrderedDict[str, str] = OrderedDict()
        self._max = max_requests
        self._lock = threading.Lock()

    def record(self, request_id: str, arm: str, latency_ms: float) -> None:
        with self._lock:
            stats = self._stats.setdefault(arm, ArmStats())
            stats.requests += 1
            stats.latencies_ms.append(latency_ms)
            self._requests[request_id] = arm
            while len(self._requests) > self._max:
                self._requests.popitem(last=False)

    def record_shadow(self, arm: str, ok: bool) -> None:
        with self._lock:
            stats = self._stats.setdefault(arm, ArmStats())
            stats.shadow_requests += 1
            stats.shadow_errors += not ok

    def feedback(self, request_id: str, signal: str) -> str | None:
        """Count ``signal`` for the arm that answered ``request_id``; None when the id is unknown (or too old)."""
        with self._lock:
            arm = self._requests.get(request_id)
            if arm is None:
                return None
            self._stats[arm].feedback[signal] += 1
            return arm

    def report(self, weights: dict[str, float]) -> dict[str, Any]:
        with self._lock:
            rows = {name: self._row(name, stats, weights.get(name)) for name, stats in self._stats.items()}
        base = rows.get(self.default)
        for name, row in rows.items():
            if name != self.default and base is not None:
                row["vs_default"] = two_proportion_test(base["helpful"], base["rated"], row["helpful"], row["rated"])
        needed = sample_size(base["helpful_share"] if base and base["rated"] else 0.5, self.min_effect)
        return {"default": self.default, "min_effect": self.min_effect, "rated_per_arm_needed": needed,
                "test": "two-proportion z-test on the helpful share (helpful / rated), 95% CI, two-sided",
                "arms": rows}

    @staticmethod
    def _row(name: str, stats: ArmStats, weight: float | None) -> dict[str, Any]:
        rated = stats.feedback["helpful"] + stats.feedback["unhelpful"]
        with_feedback = sum(stats.feedback.values())
        latencies = np.asarray(stats.latencies_ms) if stats.latencies_ms else None
        return {
            "weight": weight, "requests": stats.requests, **{f"{s}s": n for s, n in stats.feedback.items()},
            "rated": rated, "helpful": stats.feedback["helpful"],
            "feedback_rate": round(with_feedback / stats.requests, 4) if stats.requests else 0.0,
            "helpful_share": round(stats.feedback["helpful"] / rated, 4) if rated else None,
            "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies is not None else None,
            "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies is not None else None,
            "shadow_requests": stats.shadow_requests, "shadow_errors": stats.shadow_errors,
        }


def two_proportion_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> dict[str, Any]:
    """Difference b − a of two proportions: estimate, 95% CI (unpooled SE) and two-sided p-value (pooled SE)."""
    from scipy.stats import norm

    if n_a == 0 or n_b == 0:
        return {"difference": None, "ci95": None, "p_value": None, "note": "no rated requests on one side yet"}
    p_a, p_b = successes_a / n_a, successes_b / n_b
    difference = p_b - p_a
    unpooled = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    pooled_p = (successes_a + successes_b) / (n_a + n_b)
    pooled = math.sqrt(pooled_p * (1 - pooled_p) * (1 / n_a + 1 / n_b))
    z = difference / pooled if pooled > 0 else 0.0
    p_value = float(2 * norm.sf(abs(z))) if pooled > 0 else 1.0
    half = norm.ppf(0.975) * unpooled
    return {"difference": round(difference, 4), "ci95": [round(difference - half, 4), round(difference + half, 4)],
            "z": round(z, 3), "p_value": round(p_value, 5)}


def sample_size(baseline: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rated requests per arm to detect ``baseline`` → ``baseline + effect`` (two-sided ``alpha``, ``power``)."""
    from scipy.stats import norm

    p1 = min(max(baseline, 1e-6), 1 - 1e-6)
    p2 = min(max(p1 + effect, 1e-6), 1 - 1e-6)
    if abs(p2 - p1) < 1e-12:
        p2 = max(1e-6, p1 - effect)
    mean = (p1 + p2) / 2
    z_a, z_b = norm.ppf(1 - alpha / 2), norm.ppf(power)
    n = (z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    return int(math.ceil(n))
