"""A tokenizer read from ``tokenizer.json`` with the Rust ``tokenizers`` library alone: no transformers, no torch.

Exported encoders (ONNX, TorchScript) tokenize with this class, so a serving install needs neither transformers
nor torch (``import transformers`` pulls torch in when it is installed: ~2 s of a one-shot query). It offers
the part of a transformers *fast* tokenizer that this package calls — ``tokenizer(texts, truncation=...,
max_length=..., padding=..., return_offsets_mapping=..., return_tensors="np")``, ``pad``, ``word_ids()``,
``model_max_length``, ``num_special_tokens_to_add``, ``unk_token_id``, ``backend_tokenizer`` — with the same
results as the transformers tokenizer whose ``save_pretrained`` wrote the folder (tests compare them).

Only folders written that way are read as transformers reads them: transformers 5 rebuilds some tokenizers
(XLM-R's) from their class rather than from a hub folder's ``tokenizer.json``, so ``deepseek-rag export``
saves the source encoder's own tokenizer. It does not convert slow tokenizers: no ``tokenizer.json``, no load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
# transformers' stand-in for "no limit" when a tokenizer_config.json names no model_max_length
_NO_LIMIT = int(1e30)


class Encoded(dict):
    """Token ids (and masks, offsets) of one text or a batch, with ``word_ids`` as transformers' BatchEncoding has."""

    def __init__(self, data: Mapping[str, Any], encodings: list[Any]) -> None:
        super().__init__(data)
        self.encodings = encodings

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        return self.encodings[batch_index].word_ids


class FastTokenizer:
    """The tokenizer of a model folder (``tokenizer.json`` + ``tokenizer_config.json``), called like a transformers one."""

    is_fast = True

    def __init__(self, folder: str | Path, *, model_input_names: Sequence[str] | None = None) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # a core dependency: only a broken install gets here
            raise MissingDependencyError("the `tokenizers` package is missing; reinstall deepseek-rag") from exc
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            raise InvalidInputError(
                f"{folder} has no {TOKENIZER_FILE}: an exported encoder needs its tokenizer files beside the graphs. "
                "Export it again with `deepseek-rag export`, or copy the tokenizer files of the source model there."
            )
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        config = _read_dict(folder / "tokenizer_config.json")
        specials = _read_dict(folder / "special_tokens_map.json")
        self.model_max_length = int(config.get("model_max_length") or _NO_LIMIT)
        self.padding_side = str(config.get("padding_side", "right"))
        self.truncation_side = str(config.get("truncation_side", "right"))
        self.model_input_names = list(model_input_names or config.get("model_input_names")
                                      or ["input_ids", "token_type_ids", "attention_mask"])
        self.pad_token = _token(config.get("pad_token") or specials.get("pad_token"))
        self.unk_token = _token(config.get("unk_token") or specials.get("unk_token"))
        self.pad_token_id = self._tokenizer.token_to_id(self.pad_token) if self.pad_token else None
        self.unk_token_id = self._tokenizer.token_to_id(self.unk_token) if self.unk_token else None
        self.name_or_path = str(folder)

    @property
    def backend_tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` itself (for hot paths that need ids only)."""
        return self._tokenizer

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
        padding: bool | str = False,
        return_offsets_mapping: bool = False,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> Encoded:
        """Token ids, attention masks and type ids of ``text`` (a string, or a list of them), as transformers returns them."""
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if truncation:
            limit = max_length if max_length is not None else self.model_max_length
            if limit < _NO_LIMIT:
                self._tokenizer.enable_truncation(limit, direction=self.truncation_side)
        try:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._tokenizer.no_truncation()
        data: dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if "token_type_ids" in self.model_input_names:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        data["attention_mask"] = [e.attention_mask for e in encodings]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if padding and padding != "do_not_pad":
            return Encoded(self.pad(data, return_tensors=return_tensors), encodings)
        if single:
            data = {key: value[0] for key, value in data.items()}
        return Encoded(_as_tensors(data, return_tensors), encodings)

    def pad(self, features: Mapping[str, Sequence[Sequence[int]]], *, return_tensors: str | None = None) -> dict[str, Any]:
        """Pad a batch of id lists to its longest (ids with the pad token, masks and type ids with 0)."""
        if self.pad_token_id is None:
            raise InvalidInputError(f"the tokenizer in {self.name_or_path} has no pad token; batches cannot be padded")
        ids = features["input_ids"]
        longest = max((len(row) for row in ids), default=0)
        out: dict[str, Any] = {}
        for key, rows in features.items():
            if key == "offset_mapping":
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            padded = np.full((len(rows), longest), fill, dtype=np.int64)
            for i, row in enumerate(rows):
                if len(row):
                    if self.padding_side == "left":
                        padded[i, longest - len(row):] = row
                    else:
                        padded[i, : len(row)] = row
            out[key] = padded
        if "attention_mask" not in out:
            out["attention_mask"] = (np.arange(longest)[None, :] < np.array([len(r) for r in ids])[:, None]).astype(np.int64)
        return _as_tensors(out, return_tensors or "np")

    def __repr__(self) -> str:
        return f"FastTokenizer({self.name_or_path!r}, vocab={self._tokenizer.get_vocab_size()})"


def _as_tensors(data: dict[str, Any], return_tensors: str | None) -> dict[str, Any]:
    if return_tensors is None:
        return data
    if return_tensors == "np":
        return {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
    if return_tensors == "pt":
        import torch

        return {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in data.items()}
    raise InvalidInputError(f"return_tensors={return_tensors!r} is not 'np', 'pt' or None")


def _read_dict(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _token(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken dict with ``content``."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None
