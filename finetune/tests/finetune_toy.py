"""The toy retrieval task the fine-tuning tests train on (imported by conftest and the tests)."""

from __future__ import annotations

from deepseek_rag_finetune.pairs import TrainingPair

TOPICS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]


def toy_pairs() -> list[TrainingPair]:
    """Query 'what about X' is answered by the passage about X: learnable from token overlap."""
    return [TrainingPair(f"what about {t}", f"{t} report: the {t} team wrote about {t} matters") for t in TOPICS]
