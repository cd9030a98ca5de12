"""How a filtered search runs on a snapshot: the filter's measured selectivity picks the plan.

* **Pre-filter** (selective filters, under ``POST_FILTER_FROM`` of the documents): the ids that pass are found in
  SQL — through an index when the key is in ``IndexSettings.filter_fields`` — and handed to the search as an id
  selector, so it only scores documents that pass.
* **Post-filter** (broad filters): the search runs unfiltered for ``k / selectivity`` (×1.5, +16) candidates and
  SQL keeps those that pass; when too few survive it looks 4× deeper (up to ``POST_FILTER_DEPTH``), then falls
  back to pre-filtering, so the answer is the same as a brute-force filtered search.

Selectivity is measured once per snapshot and filter on an evenly spaced sample of each segment's documents; the
allowed ids of the last 64 filters are kept per snapshot. A range over a key that some documents hold as text
("120" where others hold 120) does not match those documents — that is the rule — and says so once in the log.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..vectors.filters import RANGES, Comparison, Filter

logger = logging.getLogger(__name__)

POST_FILTER_FROM = 0.2
"""Filters passing at least this share of the documents post-filter; narrower ones pre-filter."""
POST_FILTER_DEPTH = 4096
"""How deep a post-filtered search may look (4× at a time) before it pre-filters instead."""
_CACHED_FILTERS = 64


class FilterPlanner:
    """Per snapshot: selectivity estimates, cached allowed ids, and the pre/post decision."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot = snapshot
        self._allowed: OrderedDict[Filter, np.ndarray] = OrderedDict()
        self._selectivity: dict[Filter, float] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def allowed_ids(self, filter_: Filter) -> np.ndarray:
        with self._lock:
            cached = self._allowed.get(filter_)
            if cached is not None:
                self._allowed.move_to_end(filter_)
                return cached
        self._warn_about_text_in_ranges(filter_)
        ids = self.snapshot.chunk_ids_matching(filter_)
        with self._lock:
            self._allowed[filter_] = ids
            while len(self._allowed) > _CACHED_FILTERS:
                self._allowed.popitem(last=False)
        return ids

    def selectivity(self, filter_: Filter) -> float:
        """Estimated share of live documents that pass (0 when the sample holds none)."""
        if filter_ in self._selectivity:
            return self._selectivity[filter_]
        passing = looked = 0.0
        for state in self.snapshot.states:
            hits, sample = state.segment.store.sample_share(filter_)
            if sample:
                weight = state.live_documents / sample
                passing += hits * weight
                looked += sample * weight
        share = passing / looked if looked else 0.0
        self._selectivity[filter_] = share
        return share

    def search(self, filter_: Filter, k: int, search: Callable[[int, np.ndarray | None], tuple[np.ndarray, np.ndarray]],
               available: int) -> tuple[np.ndarray, np.ndarray]:
        """Run ``search(depth, allowed_ids)`` under the plan the filter's selectivity picks; (scores, ids) of (n, k)."""
        share = self.selectivity(filter_)
        if share >= POST_FILTER_FROM:
            depth = min(available, int(math.ceil(k / share * 1.5)) + 16)
            deepest = min(available, max(depth, POST_FILTER_DEPTH))
            while True:
                scores, ids = search(depth, None)
                kept = self._post_filter(filter_, scores, ids, k)
                if kept is not None:
                    return kept
                if depth >= deepest:
                    break
                # too few passed among the best: the filter's documents rank low for this query (cheap parkas for
                # "down parka"). Look deeper before listing every id a broad filter passes, which costs far more.
                depth = min(deepest, depth * 4)
        scores, ids = search(k, self.allowed_ids(filter_))
        return scores[:, :k], ids[:, :k]

    def _post_filter(self, filter_: Filter, scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        candidates = np.unique(ids[ids >= 0])
        passing = self.snapshot.chunk_ids_matching(filter_, among=candidates)
        out_scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(ids), k), -1, dtype=np.int64)
        for row in range(len(ids)):
            keep = np.isin(ids[row], passing) & (ids[row] >= 0)
            found = ids[row][keep][:k]
            exhausted = (ids[row] < 0).any()  # the search returned everything there is
            if len(found) < k and not exhausted:
                return None  # too few survived: pre-filter instead
            out_ids[row, : len(found)] = found
            out_scores[row, : len(found)] = scores[row][keep][:k]
        return out_scores, out_ids

    def _warn_about_text_in_ranges(self, filter_: Filter) -> None:
        keys = set()

        def visit(node: Any) -> None:
            if isinstance(node, Comparison):
                if node.op in RANGES and node.key != "doc_id":
                    keys.add(node.key)
            else:
                for child in getattr(node, "children", ()) or ((node.child,) if hasattr(node, "child") else ()):
                    visit(child)

        visit(filter_.root)
        for key in keys - self._warned:
            self._warned.add(key)
            count, examples = 0, []
            for state in self.snapshot.states:
                n, ids = state.segment.store.non_numeric(key)
                count += n
                examples.extend(ids)
            if count:
                logger.warning("a range filter on %r skips %d document(s) whose %s is not a number (e.g. %s); store "
                               "numbers as numbers to filter them by range", key, count, key, ", ".join(examples[:5]))
