"""The collections a Milvus store lives in: their schema and index parameters, their names, the identity a writer
records on each, and the check that a target can build an index type (on a throw-away collection).

Used by :class:`~deepseek_rag.vectors.milvus.MilvusVectorStore` and ``storage/milvus_segments.py``; searching and
reading rows is ``milvus.py``'s job.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexSpecError, InvalidInputError
from .milvus_connection import DEFAULT_TIMEOUT, milvus_reason, quiet_pymilvus
from .milvus_spec import MilvusIndexSpec

logger = logging.getLogger(__name__)

VECTOR_FIELD = "vector"
IDENTITY_PROPERTY = "deepseek_rag"
VARCHAR_MAX = 65535
MAX_KEYS = 1024


def check_buildable(uri: str, spec: MilvusIndexSpec | str, dim: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Build ``spec`` on a throw-away collection of 160 random vectors (flush, release, load, search), so a type the
    target cannot build fails in a second, before anything is encoded."""
    from .milvus import MilvusVectorStore

    spec = MilvusIndexSpec.parse(spec) if isinstance(spec, str) else spec
    spec = spec.resolve(1 << 30) if spec.index_type == "auto" else spec
    probe = MilvusIndexSpec(spec.index_type, {**spec.params, **({"nlist": 4} if spec.is_ivf else {})})
    name = f"deepseek_rag_probe_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    store = MilvusVectorStore.create(uri, name, dim, probe, rows=160, timeout=timeout)
    try:
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((160, dim)).astype(np.float32)  # 4 lists × 40: what faiss k-means wants
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.add(np.arange(1, 161, dtype=np.int64), vectors)
        try:
            store.finish()
        except IndexSpecError:
            raise IndexSpecError(
                f"Milvus at {store.uri} cannot build index type {spec.index_type}; choose one it builds "
                "(milvus-lite: FLAT, IVF_FLAT, IVF_SQ8, HNSW, HNSW_SQ; a Milvus server also IVF_PQ, DISKANN...)"
            ) from None
        store.search(vectors[:1], 1)
    finally:
        with quiet_pymilvus():
            store.drop()


def read_identity(client: Any, collection: str, timeout: float) -> dict[str, Any]:
    """The identity a writer recorded on ``collection`` ({} for a collection this library did not write)."""
    description = client.describe_collection(collection, timeout=timeout)
    raw = (description.get("properties") or {}).get(IDENTITY_PROPERTY)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check_collection_name(name: str) -> None:
    """Milvus names: a letter or underscore first, then letters, digits and underscores, at most 255."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name):
        raise InvalidInputError(
            f"Milvus collection name {name!r} must start with a letter or '_' and hold only letters, digits and '_' "
            "(at most 255); pass --collection NAME"
        )


def collection_name_for(folder: Path) -> str:
    """A collection name from an index directory's name ("sci-fact.idx" → "sci_fact_idx")."""
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(folder).absolute().name) or "deepseek_rag"
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def unbuildable(exc: BaseException) -> bool:
    """A load failure that says the index type itself cannot be built (not worth a retry)."""
    text = milvus_reason(exc).lower()
    return any(word in text for word in ("index_type", "index type", "not supported", "unsupported", "reserved"))


def collection_schema(client: Any, dim: int, chunk_fields: bool) -> Any:
    """The fields of a collection: ``id`` and ``vector``, and with ``chunk_fields`` those of a segment's chunks."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    if chunk_fields:
        schema.add_field("doc_id", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("ordinal", DataType.INT64)
        schema.add_field("char_start", DataType.INT64)
        schema.add_field("char_end", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("section", DataType.VARCHAR, max_length=VARCHAR_MAX, nullable=True)
        schema.add_field("metadata", DataType.JSON)
        for part in ("meta_num", "meta_bool", "meta_str", "meta_list"):  # the metadata by type (milvus_filter.py)
            schema.add_field(part, DataType.JSON)
        schema.add_field("null_keys", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_KEYS, max_length=1024)
        schema.add_field("gap_before", DataType.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("tail", DataType.VARCHAR, max_length=VARCHAR_MAX)
    return schema


def index_params(client: Any, spec: MilvusIndexSpec, build: Mapping[str, Any]) -> Any:
    """The inner-product index ``spec`` with its build parameters, as ``create_index`` takes it."""
    params = client.prepare_index_params()
    # "params" nested, the wire form both Milvus servers and milvus-lite read (pymilvus 3 would flatten a plain dict)
    params.add_index(field_name=VECTOR_FIELD, index_type=spec.index_type, metric_type="IP",
                     params={"params": dict(build)} if build else {})
    return params
