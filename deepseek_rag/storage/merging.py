"""When segments are merged: a tiered policy, as Lucene's ``LogMergePolicy`` does it, plus deletion clean-up.

Every publish adds at most one segment, so without merging a long-running writer would leave thousands of
small segments and every search would visit each. Segments are grouped into tiers by live size
(tier t holds sizes in ``[floor·f^t, floor·f^(t+1))``, f = ``merge_factor``); when a tier holds ``f``
segments they are merged into one of the next tier. Each chunk is thus rewritten about log_f(N / floor)
times over its life, and a publish costs what its change costs plus, now and then, one merge. A segment
whose deleted share passes ``max_deleted_share`` is rewritten alone, and one with nothing live left is
simply dropped from the next version.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config
from ..errors import InvalidInputError

TIER_FLOOR = 1000
"""Segments below this many live chunks share the lowest tier."""


@dataclass
class VersionSettings(Config):
    """How many versions a directory keeps and when its segments are merged; saved with the index settings."""

    keep_versions: int = field(
        default=3, metadata={"help": "Published versions kept on disk (readers of older ones keep their open files)."}
    )
    merge_factor: int = field(
        default=4,
        metadata={"help": "Merge a size tier once it holds this many segments. Each segment costs every search a "
                          "little (one more vector search, postings part and store), so fewer, larger tiers: with 4, "
                          "a reader's p50 stayed within 10% of a one-segment index while a writer published every "
                          "second (benchmarks/concurrency.py); each chunk is rewritten about log4(N/1000) times."},
    )
    max_deleted_share: float = field(
        default=0.3, metadata={"help": "Rewrite a segment without its deleted chunks once they pass this share."}
    )

    def __post_init__(self) -> None:
        for name in ("keep_versions", "merge_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "keep_versions" else 2):
                raise InvalidInputError(f"VersionSettings.{name}={value!r} must be a whole number >= "
                                        f"{1 if name == 'keep_versions' else 2}")
        share = self.max_deleted_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise InvalidInputError(f"VersionSettings.max_deleted_share={share!r} must be in (0, 1]")


@dataclass(frozen=True)
class SegmentSize:
    """What the policy needs to know of a segment."""

    chunks: int
    deleted: int

    @property
    def live(self) -> int:
        return self.chunks - self.deleted


def plan_merges(sizes: Sequence[SegmentSize], settings: VersionSettings) -> list[list[int]]:
    """Groups of segment positions to merge (each group becomes one segment); [] when nothing is due.

    Fully deleted segments are not merged (the caller drops them); a group never mixes tiers.
    """
    groups: list[list[int]] = []
    tiers: dict[int, list[int]] = defaultdict(list)
    for position, size in enumerate(sizes):
        if size.live <= 0:
            continue
        if size.chunks and size.deleted / size.chunks > settings.max_deleted_share:
            groups.append([position])
            continue
        tier = int(math.log(max(size.live, TIER_FLOOR) / TIER_FLOOR, settings.merge_factor))
        tiers[tier].append(position)
    for tier in sorted(tiers):
        members = tiers[tier]
        if len(members) >= settings.merge_factor:
            groups.append(members)
    return groups
