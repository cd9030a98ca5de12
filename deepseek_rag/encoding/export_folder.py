"""The folder ``deepseek-rag export`` writes, as a reader sees it: its manifest, ``deepseek_rag_export.json``.

An export holds one graph per side (one shared file when the sides are the same model), the source encoder's
tokenizer files, and this manifest: format and precision, what the graphs take and return, the encoding
settings baked in (pooling, projection, normalisation) or applied around them (prefixes, max length), and the
identity of the torch encoder it came from — its base fingerprint and adapter hashes, so an index built with
that encoder opens with the export. Reading only; no runtime is imported here (``export.py`` writes folders).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import InvalidInputError
from .model_folder import SIDES

logger = logging.getLogger(__name__)

EXPORT_MANIFEST_NAME = "deepseek_rag_export.json"
EXPORT_FORMAT_VERSION = 1
FORMATS = ("onnx", "torchscript")
PRECISIONS = ("float32", "int8")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embeddings"


@dataclass
class ExportManifest(Config):
    """What an exported encoder folder holds and what its vectors mean."""

    format: str = field(metadata={"help": "onnx | torchscript: the runtime that reads the graphs."})
    graphs: dict[str, str] = field(metadata={"help": "Per side ('query', 'document'), the graph file, relative to the folder."})
    dim: int = field(metadata={"help": "Length of the unit vectors the graphs return."})
    base_fingerprint: str = field(metadata={"help": "Base fingerprint of the torch encoder exported (fingerprint.py)."})
    max_positions: int = field(metadata={"help": "Longest input the model accepts, in tokens."})
    max_seq_length: int = field(metadata={"help": "Tokens read per text, as the source encoder read them."})
    pooling: str = field(default="mean", metadata={"help": "Pooling inside the graphs (mean | cls | max | lasttoken)."})
    precision: str = field(default="float32", metadata={"help": "float32 | int8 (dynamic, per-channel weights)."})
    adapter_hashes: dict[str, str] = field(default_factory=dict, metadata={"help": "Per side, the merged adapter's hash."})
    query_prefix: str = field(default="", metadata={"help": "Text put before every query."})
    document_prefix: str = field(default="", metadata={"help": "Text put before every document chunk."})
    input_names: list[str] = field(default_factory=lambda: ["input_ids", "attention_mask"],
                                   metadata={"help": "Graph inputs, in order (int64, shape batch x sequence)."})
    output_name: str = field(default=OUTPUT_NAME, metadata={"help": "Graph output: float32 unit vectors, batch x dim."})
    layout: str = field(default="folder", metadata={"help": "folder | triton (graphs inside a Triton model repository)."})
    source_model: str = field(default="", metadata={"help": "Name of the model folder exported (for people)."})
    library_version: str = field(default="", metadata={"help": "deepseek-rag version that wrote the export."})
    probe_cosine_min: float | None = field(
        default=None, metadata={"help": "Lowest cosine between the export's and the torch encoder's vectors on probe texts."}
    )

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInputError(f"export format={self.format!r} is not one of {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"export precision={self.precision!r} is not one of {', '.join(PRECISIONS)}")
        unknown = sorted(set(self.graphs) - set(SIDES))
        if unknown or not self.graphs:
            raise InvalidInputError(f"export graphs={self.graphs!r} must map 'query' and/or 'document' to graph files")
        extra = sorted(set(self.input_names) - set(INPUT_NAMES))
        if extra or "input_ids" not in self.input_names:
            raise InvalidInputError(f"export input_names={self.input_names!r}: need input_ids, and only {INPUT_NAMES}")
        if self.dim < 1:
            raise InvalidInputError(f"export dim={self.dim} must be positive")

    @property
    def quantization(self) -> str | None:
        """``"int8"`` for a quantized export, else None: what an index's fingerprint compares."""
        return None if self.precision == "float32" else self.precision

    def graph_path(self, folder: Path, side: str) -> Path:
        """The graph file that encodes ``side``; a side left out of the export is a clear error."""
        name = self.graphs.get(side)
        if name is None:
            raise InvalidInputError(
                f"the export in {folder} holds only the {', '.join(sorted(self.graphs))} side; "
                f"export the {side} side too (`deepseek-rag export ... --side both`) to encode {side}s with it"
            )
        return folder / name

    def write(self, folder: Path) -> Path:
        path = folder / EXPORT_MANIFEST_NAME
        payload = {"format_version": EXPORT_FORMAT_VERSION, **self.to_dict()}
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def is_export_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds an export manifest (``deepseek-rag export`` wrote it)."""
    return (Path(folder) / EXPORT_MANIFEST_NAME).is_file()


def read_export_manifest(folder: str | Path) -> ExportManifest:
    """The manifest of an export folder; a missing, damaged or newer one is an :class:`InvalidInputError`."""
    folder = Path(folder)
    path = folder / EXPORT_MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{folder} is not an exported encoder: {EXPORT_MANIFEST_NAME} is missing "
                                "(write one with `deepseek-rag export`)") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path} is not valid JSON ({exc}); export the encoder again") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != EXPORT_FORMAT_VERSION:
        raise InvalidInputError(
            f"{path} has format_version {version!r}; this deepseek-rag reads {EXPORT_FORMAT_VERSION}. "
            "Upgrade deepseek-rag or export the encoder again."
        )
    manifest = ExportManifest.from_dict(data)
    for side in manifest.graphs:
        if not manifest.graph_path(folder, side).is_file():
            raise InvalidInputError(f"{folder}: the {side} graph {manifest.graphs[side]!r} named in {EXPORT_MANIFEST_NAME} "
                                    "is missing; export the encoder again")
    return manifest


def export_defaults(manifest: ExportManifest) -> dict[str, Any]:
    """Encoding settings an export fixes, in the keys ``DualEncoder`` reads from a sentence-transformers folder."""
    return {"pooling": manifest.pooling, "max_seq_length": manifest.max_seq_length,
            "query_prefix": manifest.query_prefix, "document_prefix": manifest.document_prefix}
