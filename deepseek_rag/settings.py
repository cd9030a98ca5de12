"""``IndexSettings``: how documents become vectors and postings, and how the directory keeps versions.

Saved in every version record, so ``add`` later cuts, embeds and analyses new documents the way the index
was built. Nested configs: chunking (``ingest/chunking.py``), the BM25 side (``sparse/bm25.py``) and versions
(``storage/merging.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import Config
from .errors import InvalidInputError
from .ingest.chunking import ChunkingConfig
from .sparse.bm25 import SparseConfig
from .storage.merging import VersionSettings
from .vectors.calibration import VectorSearchSettings


DENSE_CHOICES = ("on", "off", "auto")


@dataclass
class VectorStoreSettings(Config):
    """Where the vectors (and, on Milvus, the chunks) of published segments live."""

    backend: str = field(default="faiss", metadata={"help": "'faiss': files in the index directory; 'milvus': a Milvus "
                                                            "collection per segment (chunks as its fields)."})
    uri: str | None = field(default=None, metadata={"help": "Milvus: milvus:///path/file.db (milvus-lite, embedded) or "
                                                            "http://host:19530 (a server, or `milvus-lite server`)."})
    collection: str | None = field(default=None, metadata={"help": "Milvus: the collection (alias) name; segments are "
                                                                   "<collection>_g000001... (default: the directory's name)."})
    timeout: float = field(default=10.0, metadata={"help": "Milvus: seconds a connection or a call may take."})

    def __post_init__(self) -> None:
        if self.backend not in ("faiss", "milvus"):
            raise InvalidInputError(f"vector_store.backend={self.backend!r} must be 'faiss' or 'milvus'")
        if self.backend == "milvus" and not self.uri:
            raise InvalidInputError("vector_store.backend='milvus' needs a uri (milvus:///path/file.db or http://host:19530)")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise InvalidInputError(f"vector_store.timeout={self.timeout!r} must be a number of seconds > 0")
        if self.uri is not None:
            from .vectors.milvus_connection import normalize_uri

            self.uri = normalize_uri(self.uri)

    @property
    def is_milvus(self) -> bool:
        return self.backend == "milvus"


@dataclass
class IndexSettings(Config):
    """How documents become vectors; saved in the manifest so ``add`` later cuts and embeds the same way."""

    index_spec: str = field(default="auto", metadata={"help": "FAISS factory string (Milvus: an index type such as "
                                                                  "IVF_SQ8,nlist=1024), or 'auto' (by corpus size)."})
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    contextual_headers: bool = field(
        default=True, metadata={"help": "Embed each chunk with its document title and section heading in front."}
    )
    dense: str = field(
        default="on",
        metadata={"help": "The vector side: on, off (BM25 only: a lexical-only index, searched in sparse mode), or "
                          "auto (off when the encoder cannot read most of a sample of the corpus's tokens; decided "
                          "at the first add and recorded as on or off)."},
    )
    sparse: SparseConfig = field(
        default_factory=SparseConfig, metadata={"help": "The BM25 side: analysis and scoring (enabled=False: none)."}
    )
    detect_language: bool = field(
        default=True,
        metadata={"help": "Record metadata['language'] (detected) on documents without one; it picks the BM25 analyzer."},
    )
    filter_fields: list[str] = field(
        default_factory=list,
        metadata={"help": "Metadata keys filters use often (price, brand...): each segment indexes them, so a selective "
                          "filter reads only the matching rows."},
    )
    versions: VersionSettings = field(
        default_factory=VersionSettings, metadata={"help": "Versions kept on disk and when segments merge."}
    )
    vector_search: VectorSearchSettings = field(
        default_factory=VectorSearchSettings,
        metadata={"help": "The recall target an IVF or two-level index's nprobe / k_factor are chosen for at build time, "
                          "or fixed values for them."},
    )
    vector_store: VectorStoreSettings = field(
        default_factory=VectorStoreSettings, metadata={"help": "FAISS files (default) or a Milvus target."}
    )

    def __post_init__(self) -> None:
        for name, kind in (("chunking", ChunkingConfig), ("sparse", SparseConfig), ("versions", VersionSettings),
                           ("vector_search", VectorSearchSettings), ("vector_store", VectorStoreSettings)):
            if isinstance(getattr(self, name), Mapping):
                setattr(self, name, kind.from_dict(getattr(self, name)))
        if not isinstance(self.filter_fields, list) or not all(isinstance(k, str) and k for k in self.filter_fields):
            raise InvalidInputError(f"filter_fields={self.filter_fields!r} must be a list of metadata key names")
        if self.dense not in DENSE_CHOICES:
            raise InvalidInputError(f"dense={self.dense!r} is not one of {', '.join(DENSE_CHOICES)}")
        if self.dense == "off" and not self.sparse.enabled:
            raise InvalidInputError("dense='off' with sparse.enabled=False leaves nothing to search; keep one side")
        if not isinstance(self.index_spec, str) or not self.index_spec.strip():
            raise InvalidInputError(f"index_spec={self.index_spec!r} must be a FAISS factory string or 'auto'")
        if self.vector_store.is_milvus:
            from .vectors.milvus_spec import MilvusIndexSpec

            MilvusIndexSpec.parse(self.index_spec)
