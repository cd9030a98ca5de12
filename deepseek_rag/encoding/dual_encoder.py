"""The dual encoder: one base model read two ways, for queries and for documents.

Each side may add a text prefix (e5 ``query: ``/``passage: ``, BGE instructions) and its own LoRA adapter
(PEFT format, written by ``deepseek-rag finetune``); both share pooling, an optional linear projection and
unit normalisation. Output is always float32 ``(n, dim)`` with unit rows.

This class owns prefixes, tokenization and length-sorted batching; the forward pass is an
:class:`~deepseek_rag.encoding.backend.EncoderBackend`: ``torch_backend.py`` for a transformers folder,
``onnx_backend.py`` / ``torchscript_backend.py`` for a folder ``deepseek-rag export`` wrote (``backend="auto"``
tells them apart by the folder). Exported encoders tokenize with ``fast_tokenizer.py``, so serving one imports
neither torch (ONNX) nor transformers. It is safe to use from many
threads at once: each thread tokenizes with its own copy of the tokenizer (a fast tokenizer called with other
truncation settings from another thread raises "Already borrowed", huggingface/tokenizers#537), and each side
has its own model module. It does not chunk, index or train (the fine-tuning package calls :meth:`embed`
with gradients on).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import InvalidInputError
from .export_folder import EXPORT_MANIFEST_NAME, ExportManifest, export_defaults, is_export_folder, read_export_manifest
from .model_folder import (
    default_model_path,
    read_adapter_config,
    read_sentence_transformers_config,
)

logger = logging.getLogger(__name__)

_POOLING_MODES = ("mean", "cls", "max", "lasttoken")
_DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("auto", "torch", "onnx", "torchscript")
EXPORT_BACKENDS = ("onnx", "torchscript")
_TOKENIZE_GROUP = 8192  # texts tokenized (and length-sorted) together when encoding


@dataclass
class EncoderConfig(Config):
    """How to load and run a :class:`DualEncoder`; every field has the default a user would pick."""

    model: str | None = field(
        default=None,
        metadata={"help": "Local transformers / sentence-transformers folder or hub id; None = bundled MiniLM."},
    )
    adapter: str | None = field(
        default=None, metadata={"help": "Folder written by `deepseek-rag finetune` (LoRA adapters + projection)."}
    )
    query_prefix: str | None = field(
        default=None, metadata={"help": "Text put before every query (e.g. 'query: '); None = from the model config."}
    )
    document_prefix: str | None = field(
        default=None, metadata={"help": "Text put before every document chunk (e.g. 'passage: ')."}
    )
    pooling: str | None = field(default=None, metadata={"help": "mean | cls | max | lasttoken; None = model config."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Tokens read per text; None = model config."})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16 (CUDA only)."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1...; None = CUDA when available."})
    batch_size: int = field(default=64, metadata={"help": "Texts per forward pass (at most)."})
    cpu_batch_tokens: int = field(
        default=2048,
        metadata={"help": "On a CPU, also cap the padded tokens per forward pass: batches that stay in cache "
                          "(8 x 256 tokens) encoded 1.16x faster than 64 x 256 on a 2-core AVX2 machine."},
    )
    backend: str = field(
        default="auto",
        metadata={"help": "Runtime of the forward pass: torch | onnx | torchscript; auto = onnx or torchscript for a folder "
                          "`deepseek-rag export` wrote (its manifest says which), else torch."},
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "Intra-op threads of the ONNX Runtime sessions; None = $DEEPSEEK_RAG_ONNX_THREADS, else ONNX "
                          "Runtime's default (one per physical core). Other backends keep torch's setting."},
    )
    allow_precision_mismatch: bool = field(
        default=False,
        metadata={"help": "Search an index built at another weight precision (an int8 export on a float32 index, or the "
                          "reverse): its vectors differ slightly (cosine ~0.98), so this must be asked for."},
    )

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in _POOLING_MODES:
            raise InvalidInputError(f"pooling={self.pooling!r} is not one of {', '.join(_POOLING_MODES)}")
        if self.dtype not in _DTYPES:
            raise InvalidInputError(f"dtype={self.dtype!r} is not one of {', '.join(_DTYPES)}")
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size={self.batch_size} must be at least 1")
        if self.cpu_batch_tokens < 1:
            raise InvalidInputError(f"cpu_batch_tokens={self.cpu_batch_tokens} must be at least 1")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise InvalidInputError(f"max_seq_length={self.max_seq_length} must be at least 8")
        if self.threads is not None and self.threads < 0:
            raise InvalidInputError(f"threads={self.threads} must be 0 (the runtime's default) or more")


class DualEncoder:
    """Encode queries and documents into unit-length float32 vectors with one base model.

    >>> encoder = DualEncoder()                       # bundled all-MiniLM-L6-v2, offline
    >>> encoder.encode_queries(["who may terminate?"]).shape
    (1, 384)
    """

    def __init__(self, config: EncoderConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = EncoderConfig(**overrides)
        elif overrides:
            config = EncoderConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.model_name = config.model or default_model_path()
        model_dir = Path(self.model_name)
        if config.model and not model_dir.exists() and (model_dir.is_absolute() or config.model.startswith(".")):
            raise InvalidInputError(f"model folder {config.model!r} does not exist; give a local model folder or hub id")
        manifest = resolve_export(config.backend, model_dir)
        if manifest is None:
            tokenizer, defaults = self._load_torch(model_dir)
        else:
            tokenizer, defaults = self._load_export(model_dir, manifest)
        self._tokenizer = tokenizer
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._counting: Any = None  # the shared read-only tokenizer of token_ids, made on first use
        self._counting_lock = threading.Lock()
        self.max_seq_length = min(config.max_seq_length or defaults.get("max_seq_length", 512), self.backend.max_positions)
        self.dim = self.backend.dim

    def _load_torch(self, model_dir: Path) -> tuple[Any, dict[str, Any]]:
        """A transformers folder: AutoTokenizer, then the torch backend with the adapter merged per side."""
        from .torch_backend import TorchBackend, import_transformers

        config = self.config
        st_config = read_sentence_transformers_config(model_dir) if model_dir.is_dir() else {}
        transformers = import_transformers()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_name)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot load the tokenizer of {self.model_name!r}: {exc}. Give a local transformers or "
                "sentence-transformers folder (nothing is downloaded when offline)."
            ) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise InvalidInputError(f"model {self.model_name!r} has no fast tokenizer (tokenizer.json); chunk offsets need one")
        adapter = read_adapter_config(Path(config.adapter)) if config.adapter else None
        defaults = {**st_config, **{k: v for k, v in (adapter or {}).get("encoder", {}).items() if v is not None}}
        self._set_text_options(defaults)
        self.backend = TorchBackend(
            self.model_name, pooling=self.pooling, device=config.device, dtype=config.dtype, st_config=st_config,
            adapter_folder=Path(config.adapter) if config.adapter else None, adapter=adapter,
        )
        return tokenizer, defaults

    def _load_export(self, model_dir: Path, manifest: ExportManifest) -> tuple[Any, dict[str, Any]]:
        """A folder ``deepseek-rag export`` wrote: its tokenizer.json, then the ONNX or TorchScript graphs."""
        from .fast_tokenizer import FastTokenizer

        config = self.config
        if config.adapter:
            raise InvalidInputError(
                f"adapter={config.adapter!r}: {model_dir} is an export, its adapters are merged into the graphs already; "
                "drop the adapter (or export the base model with that adapter)"
            )
        if config.dtype not in ("auto", "float32"):
            raise InvalidInputError(f"dtype={config.dtype!r}: an exported encoder runs at the precision it was exported "
                                    f"with ({manifest.precision}); leave dtype='auto'")
        if config.pooling not in (None, manifest.pooling):
            raise InvalidInputError(f"pooling={config.pooling!r}: the export in {model_dir} has {manifest.pooling!r} "
                                    "pooling inside its graphs; leave pooling unset or export again")
        tokenizer = FastTokenizer(model_dir, model_input_names=manifest.input_names)
        defaults = export_defaults(manifest)
        self._set_text_options(defaults)
        if manifest.format == "onnx":
            from .onnx_backend import OnnxBackend

            self.backend = OnnxBackend(model_dir, manifest, device=config.device, threads=config.threads)
        else:
            from .torchscript_backend import TorchScriptBackend

            self.backend = TorchScriptBackend(model_dir, manifest, device=config.device)
        return tokenizer, defaults

    def _set_text_options(self, defaults: dict[str, Any]) -> None:
        config = self.config
        self.pooling = config.pooling or defaults.get("pooling", "mean")
        self.query_prefix = config.query_prefix if config.query_prefix is not None else defaults.get("query_prefix", "")
        self.document_prefix = (
            config.document_prefix if config.document_prefix is not None else defaults.get("document_prefix", "")
        )

    # ----------------------------------------------------------------------------------- runtime
    @property
    def tokenizer(self) -> Any:
        """This thread's tokenizer (a copy per thread: fast tokenizers are not safe to share across threads)."""
        if threading.get_ident() == self._owner:
            return self._tokenizer
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._local.tokenizer = copy.deepcopy(self._tokenizer)
        return tokenizer

    def token_ids(self, text: str) -> list[int]:
        """``text``'s token ids without special tokens or truncation, from any thread without a copy.

        One Rust tokenizer, configured once and never changed, serves every thread (its ``encode`` only reads
        it), unlike :attr:`tokenizer`, which copies the tokenizer for each new thread: a request path that runs
        on a thread pool whose threads come and go (AnyIO's, under FastAPI) would copy it again and again."""
        return self._shared_tokenizer().encode(text, add_special_tokens=False).ids

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character range of each of ``text``'s tokens (no special tokens, no truncation); as
        :meth:`token_ids`, from any thread without a copy."""
        return self._shared_tokenizer().encode(text, add_special_tokens=False).offsets

    def _shared_tokenizer(self) -> Any:
        counting = self._counting
        if counting is None:
            with self._counting_lock:
                if self._counting is None:
                    from tokenizers import Tokenizer

                    counting = Tokenizer.from_str(self._tokenizer.backend_tokenizer.to_str())
                    counting.no_truncation()
                    counting.no_padding()
                    self._counting = counting
                counting = self._counting
        return counting

    @property
    def unk_token_id(self) -> int | None:
        """The unknown token's id (None when the vocabulary has no such token)."""
        return self._tokenizer.unk_token_id

    @property
    def device(self) -> str:
        return self.backend.device

    @property
    def dtype(self) -> Any:
        return getattr(self.backend, "dtype", "float32")

    @property
    def base_fingerprint(self) -> str:
        return self.backend.base_fingerprint

    @property
    def adapter_hashes(self) -> dict[str, str]:
        return self.backend.adapter_hashes

    # ----------------------------------------------------------------------------------- encoding
    def tokenize(self, texts: Sequence[str], side: str) -> dict[str, Any]:
        """Prefix and tokenize ``texts`` for ``side`` ('query' | 'document'), padded to the longest (torch tensors)."""
        return self.tokenizer(
            self._prefixed(texts, side), padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )

    def _prefixed(self, texts: Sequence[str], side: str) -> list[str]:
        prefix = self.query_prefix if side == "query" else self.document_prefix
        return [prefix + t for t in texts]

    def embed(self, features: dict[str, Any], side: str) -> Any:
        """Forward pass → pooled, projected, normalised embeddings as a torch tensor (gradients allowed; torch only)."""
        if not hasattr(self.backend, "embed"):
            raise InvalidInputError(f"embed() needs the torch backend (this encoder runs {self.backend.name}); "
                                    "train or fine-tune with the source model, not an export")
        return self.backend.embed(features, side)

    def _encode(self, texts: Sequence[str], side: str, batch_size: int | None, progress: bool | None) -> np.ndarray:
        from tqdm.auto import tqdm

        if isinstance(texts, str):
            raise InvalidInputError("pass a list of texts, not a single string (wrap it: [text])")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = batch_size or self.config.batch_size
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = progress if progress is not None else (len(texts) > 4 * batch_size and logger.isEnabledFor(logging.INFO))
        tokenizer = self.tokenizer
        with tqdm(total=len(texts), desc=f"encode {side}s", disable=not show, unit="text") as bar:
            # Token ids of a group at a time: a million chunks tokenized at once would hold GBs of Python ints.
            for group in range(0, len(texts), _TOKENIZE_GROUP):
                group_texts = self._prefixed(texts[group : group + _TOKENIZE_GROUP], side)
                encoded = tokenizer(group_texts, truncation=True, max_length=self.max_seq_length)
                lengths = np.array([len(ids) for ids in encoded["input_ids"]])
                # Length-sorted batches pad little; results are put back in the caller's order.
                order = np.argsort(-lengths, kind="stable")
                for start, stop in self._batches(lengths[order], batch_size):
                    idx = order[start:stop]
                    features = tokenizer.pad({key: [encoded[key][i] for i in idx] for key in encoded.keys()}, return_tensors="np")
                    out[group + idx] = self.backend.forward(features, side)
                    bar.update(len(idx))
        return out

    def _batches(self, sorted_lengths: np.ndarray, batch_size: int) -> Iterator[tuple[int, int]]:
        """(start, stop) slices of the longest-first texts: ``batch_size`` texts at most and, on a CPU, no more
        than ``cpu_batch_tokens`` padded tokens (the first text of a batch is its longest)."""
        budget = self.config.cpu_batch_tokens if self.device.startswith("cpu") else None
        start = 0
        while start < len(sorted_lengths):
            size = batch_size if budget is None else max(1, min(batch_size, budget // int(sorted_lengths[start])))
            yield start, min(start + size, len(sorted_lengths))
            start += size

    def encode_queries(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Unit-length float32 vectors ``(len(texts), dim)`` for search queries."""
        return self._encode(texts, "query", batch_size, progress)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Unit-length float32 vectors ``(len(texts), dim)`` for document chunks."""
        return self._encode(texts, "document", batch_size, progress)

    # ----------------------------------------------------------------------------------- identity
    @property
    def document_prefix_tokens(self) -> int:
        """Tokens the document prefix takes, which chunking must leave free in every window."""
        if not self.document_prefix:
            return 0
        return len(self.tokenizer(self.document_prefix, add_special_tokens=False)["input_ids"])

    def fingerprint(self) -> dict[str, Any]:
        """What must match between the encoder that built an index and the one that queries it."""
        return {
            "model": Path(self.model_name).name if Path(self.model_name).exists() else self.model_name,
            "base_fingerprint": self.base_fingerprint,
            "adapter": self.adapter_hashes.get("document"),
            "query_adapter": self.adapter_hashes.get("query"),
            "pooling": self.pooling,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
            "quantization": getattr(self.backend, "quantization", None),
        }


def resolve_export(backend: str, model_dir: Path) -> ExportManifest | None:
    """The export manifest when ``backend`` (auto, onnx, torchscript) runs an exported folder; None for torch."""
    if not is_export_folder(model_dir):
        if backend in EXPORT_BACKENDS:
            raise InvalidInputError(
                f"backend={backend!r} runs an exported encoder, and {str(model_dir)!r} is not one (it has no "
                f"{EXPORT_MANIFEST_NAME}): run `deepseek-rag export {model_dir} --format {backend} --out DIR` and load DIR"
            )
        return None
    manifest = read_export_manifest(model_dir)
    if backend == "torch" or (backend in EXPORT_BACKENDS and backend != manifest.format):
        raise InvalidInputError(
            f"backend={backend!r}: {model_dir} is an exported {manifest.format} encoder; "
            f"use backend={manifest.format!r} or 'auto'"
        )
    return manifest
