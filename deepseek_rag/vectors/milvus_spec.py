"""The Milvus index-spec policy: which index type a spec string names, its build and search knobs, and what
``"auto"`` builds — the Milvus counterpart of ``specs.py``.

A spec is ``TYPE[,key=value...]``: ``"FLAT"``, ``"IVF_SQ8"``, ``"IVF_SQ8,nlist=1024"``, ``"HNSW,M=16,efConstruction=200"``.
``"auto"`` is ``FLAT`` below ``AUTO_IVF_THRESHOLD`` vectors and ``IVF_SQ8`` from there on, as on FAISS (``Flat`` /
``IVF…,SQ8``). IVF list counts follow the same rule as FAISS (:func:`suggest_nlist`), per segment collection: each
segment is its own collection with its own index, so a small segment gets few lists. Search knobs: ``nprobe``
(IVF), ``ef`` (HNSW; ``efSearch`` is accepted as FAISS spells it). Whether the target can *build* a type is not
decided here: the target is asked (``milvus.py`` checks it before anything is encoded, and again after a write).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import IndexSpecError
from .specs import AUTO_IVF_THRESHOLD, default_nprobe, suggest_nlist

KNOWN_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "IVF_RABITQ", "HNSW", "HNSW_SQ", "HNSW_PQ", "HNSW_PRQ",
               "DISKANN", "SCANN", "AUTOINDEX", "GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE")
"""Index types a Milvus server may build (milvus-lite 3.2 builds FLAT, IVF_FLAT, IVF_SQ8, HNSW, HNSW_SQ)."""

BUILD_KNOBS = {"IVF": ("nlist", "m", "nbits"), "HNSW": ("M", "efConstruction", "m", "nbits", "sq_type", "refine"),
               "DISKANN": (), "SCANN": ("nlist", "with_raw_data"), "FLAT": (), "AUTOINDEX": (), "GPU": ("nlist", "m", "nbits")}
SEARCH_KNOBS = ("nprobe", "ef", "efSearch")
HNSW_DEFAULT_EF = 64
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class MilvusIndexSpec:
    """An index type and its build parameters (``nlist`` left out: chosen per segment unless given)."""

    index_type: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> MilvusIndexSpec:
        """``"IVF_SQ8,nlist=256"`` → ``MilvusIndexSpec("IVF_SQ8", {"nlist": 256})``; ``"auto"`` stays ``"auto"``."""
        if not isinstance(spec, str) or not spec.strip():
            raise IndexSpecError(f"Milvus index spec must be a type such as 'IVF_SQ8' or 'auto', got {spec!r}")
        parts = [p.strip() for p in spec.strip().split(",")]
        name = parts[0]
        if name.lower() == "auto" and len(parts) == 1:
            return cls("auto")
        index_type = name.upper()
        if index_type not in KNOWN_TYPES or not _NAME.match(index_type):
            hint = ""
            if re.match(r"^(Flat|IVF\d+|HNSW\d+|PQ\d+|OPQ)", name):
                hint = f" ({name!r} is a FAISS factory string; on Milvus use e.g. FLAT, IVF_SQ8,nlist=1024 or HNSW,M=16)"
            raise IndexSpecError(
                f"unknown Milvus index type {name!r}{hint}; known: {', '.join(KNOWN_TYPES)}, or 'auto'"
            )
        params: dict[str, Any] = {}
        allowed = _build_knobs(index_type)
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise IndexSpecError(f"Milvus index spec {spec!r}: {part!r} should be key=value (e.g. nlist=1024)")
            if key not in allowed:
                raise IndexSpecError(
                    f"Milvus index spec {spec!r}: {index_type} takes no build parameter {key!r}; "
                    f"known: {', '.join(allowed) or 'none'}"
                )
            params[key] = _number(value, key, spec)
        return cls(index_type, params)

    def resolve(self, n_vectors: int) -> MilvusIndexSpec:
        """``auto`` resolved for a corpus of ``n_vectors`` (other specs unchanged)."""
        if self.index_type != "auto":
            return self
        return MilvusIndexSpec("FLAT") if n_vectors < AUTO_IVF_THRESHOLD else MilvusIndexSpec("IVF_SQ8")

    def for_segment(self, rows: int) -> dict[str, Any]:
        """Build parameters for one segment collection of ``rows`` vectors (IVF lists sized to it)."""
        params = dict(self.params)
        if self.is_ivf:
            given = params.get("nlist")
            params["nlist"] = int(max(1, min(int(given), rows))) if given else suggest_nlist(max(1, rows))
        return params

    @property
    def is_ivf(self) -> bool:
        return self.index_type.startswith("IVF") or self.index_type in ("SCANN", "GPU_IVF_FLAT", "GPU_IVF_PQ")

    @property
    def is_hnsw(self) -> bool:
        return self.index_type.startswith("HNSW")

    def __str__(self) -> str:
        return ",".join([self.index_type, *(f"{k}={v}" for k, v in self.params.items())])


def search_knobs(spec: MilvusIndexSpec, build: dict[str, Any], k: int, params: dict[str, Any]) -> dict[str, Any]:
    """The engine-side search parameters of one segment for top-``k``: nprobe for IVF (default as on FAISS),
    ef ≥ k for HNSW."""
    knobs: dict[str, Any] = {}
    if spec.is_ivf:
        nlist = int(build.get("nlist") or 1)
        probe = params.get("nprobe")
        knobs["nprobe"] = int(min(nlist, probe if probe is not None else default_nprobe(nlist)))
    elif spec.is_hnsw:
        ef = params.get("ef", params.get("efSearch"))
        knobs["ef"] = int(max(k, ef if ef is not None else HNSW_DEFAULT_EF))
    return knobs


def _build_knobs(index_type: str) -> tuple[str, ...]:
    for prefix, knobs in BUILD_KNOBS.items():
        if index_type.startswith(prefix):
            return knobs
    return ()


def _number(value: str, key: str, spec: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        if key in ("sq_type",):
            return value
        raise IndexSpecError(f"Milvus index spec {spec!r}: {key}={value!r} should be a number") from None
