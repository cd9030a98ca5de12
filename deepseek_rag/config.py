"""One base for every config dataclass: JSON round trip, strict ``from_dict``, nested configs, a format version.

PEFT's ``LoraConfig`` is the model: fields carry ``metadata={"help": ...}``, ``__post_init__`` validates and
raises an error naming the field and the bad value, and a config saved as JSON reads back equal. Unknown keys
are an error that names them (a typo in a saved file or a newer library's field must not be dropped silently).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import InvalidInputError

C = TypeVar("C", bound="Config")

CONFIG_FORMAT_VERSION = 1
"""Version of the JSON written by :meth:`Config.save`; :meth:`Config.load` refuses versions it does not know."""


class Config:
    """Mixin for ``@dataclass`` configs: ``to_dict`` / ``from_dict`` (strict, nested) and ``save`` / ``load``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; nested configs become dicts."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Config) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | C) -> C:
        """Build from a dict; unknown keys raise :class:`InvalidInputError` naming them and the known ones."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known) - {"format_version"})
        if unknown:
            raise InvalidInputError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
        nested = _nested_config_types(cls)
        values = {}
        for key, value in data.items():
            if key == "format_version":
                continue
            target = nested.get(key)
            values[key] = target.from_dict(value) if target is not None and isinstance(value, Mapping) else value
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write this config as JSON with its format version."""
        payload = {"format_version": CONFIG_FORMAT_VERSION, **self.to_dict()}
        Path(path).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a file written by :meth:`save`; another format version is a clear error."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != CONFIG_FORMAT_VERSION:
            raise InvalidInputError(
                f"{path} has config format_version {version!r}; this library reads {CONFIG_FORMAT_VERSION}"
            )
        return cls.from_dict(data)


def _nested_config_types(cls: type) -> dict[str, type[Config]]:
    hints = typing.get_type_hints(cls)
    found = {}
    for name, hint in hints.items():
        candidates = typing.get_args(hint) or (hint,)
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, Config):
                found[name] = candidate
    return found
