"""A/B arms: which index answers a request, chosen by a stable hash of the caller, weights changed live.

The config names the arms (``serve.toml``)::

    salt = "2026-12"            # change it to reshuffle users between arms
    split_anonymous = false     # requests with no user id go to the default arm
    min_effect = 0.05           # for the sample size the report says is still needed
    shadow = "candidate"        # optional: gets a copy of every request, never answers

    [[arms]]
    name = "base"
    index = "indexes/base"      # relative to the config file
    weight = 90
    default = true

    [[arms]]
    name = "tuned"
    index = "indexes/tuned"
    weight = 10

Routing is sticky, as Optimizely and Amplitude bucket users: ``sha256(salt:user)`` picks a point in [0, 1),
and the arms own consecutive slices of it in config order, each as wide as its weight's share — the *last*
arm's slice is anchored at the top, so raising the new arm's exposure (10% → 50% → 100%) only adds users to it:
everyone who had it keeps it. ``X-Arm`` forces an arm (tests, debugging).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import InvalidInputError


@dataclass
class ArmSettings(Config):
    """One arm: a name, an index directory (its own encoder and adapter, as its manifest records) and a weight."""

    name: str = field(default="default", metadata={"help": "Arm name: in responses, metrics and X-Arm."})
    index: str = field(default="", metadata={"help": "Index directory (relative paths: to the config file)."})
    weight: float = field(default=100.0, metadata={"help": "Share of traffic, relative to the other arms' weights."})
    default: bool = field(default=False, metadata={"help": "Gets requests without a user id (one arm is the default)."})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise InvalidInputError(f"arm name {self.name!r} must be letters, digits, '-', '_' or '.'")
        if not isinstance(self.index, str) or not self.index:
            raise InvalidInputError(f"arm {self.name!r} needs an index directory")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise InvalidInputError(f"arm {self.name!r}: weight={self.weight!r} must be a number >= 0")


@dataclass
class ExperimentSettings(Config):
    """The arms and how requests are split between them."""

    arms: list[ArmSettings] = field(default_factory=list)
    salt: str = field(default="deepseek-rag", metadata={"help": "Hashed with the user id; change it to reshuffle users."})
    split_anonymous: bool = field(default=False, metadata={"help": "Split requests without a user id by weight too."})
    min_effect: float = field(default=0.05, metadata={"help": "Smallest difference in helpful share worth detecting."})
    shadow: str | None = field(default=None, metadata={"help": "Arm that gets a copy of each request, never answers."})

    def __post_init__(self) -> None:
        self.arms = [a if isinstance(a, ArmSettings) else ArmSettings.from_dict(a) for a in self.arms]
        if not self.arms:
            raise InvalidInputError("the serve config names no [[arms]]; give at least one")
        names = [a.name for a in self.arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"arm names must be unique; {duplicates} appear more than once")
        defaults = [a.name for a in self.arms if a.default]
        if len(defaults) > 1:
            raise InvalidInputError(f"only one arm can be the default; {defaults} all say default = true")
        if not defaults:
            self.arms[0].default = True
        if self.shadow is not None and self.shadow not in names:
            raise InvalidInputError(f"shadow = {self.shadow!r} is not an arm; arms: {', '.join(names)}")
        routed = [a for a in self.arms if a.name != self.shadow]
        if not routed:
            raise InvalidInputError("every arm is the shadow; at least one arm must answer requests")
        if sum(a.weight for a in routed) <= 0:
            raise InvalidInputError(
                f"the weights of the arms that answer ({', '.join(f'{a.name}={a.weight:g}' for a in routed)}) sum to "
                "0; give at least one a positive weight"
            )
        if not 0 < float(self.min_effect) < 1:
            raise InvalidInputError(f"min_effect={self.min_effect!r} must be between 0 and 1 (a difference in share)")

    @property
    def default_arm(self) -> str:
        return next(a.name for a in self.arms if a.default)

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentSettings:
        """Read a ``serve.toml``; arm index paths become relative to its folder."""
        path = Path(path)
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputError(f"serve config {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"serve config {path} is not valid TOML: {exc}") from exc
        known = {"arms", "salt", "split_anonymous", "min_effect", "shadow"}
        arms = []
        for entry in data.get("arms", []):
            if not isinstance(entry, dict):
                raise InvalidInputError(f"{path}: each [[arms]] entry must be a table")
            entry = {k: v for k, v in entry.items() if k in {"name", "index", "weight", "default"}}  # extra keys are fine
            if isinstance(entry.get("index"), str) and not Path(entry["index"]).is_absolute():
                entry["index"] = str((path.parent / entry["index"]).resolve())
            arms.append(ArmSettings.from_dict(entry))
        return cls.from_dict({**{k: v for k, v in data.items() if k in known}, "arms": arms})


class ArmRouter:
    """Picks the arm of each request; weights can change while serving (``set_weights``, ``promote``)."""

    def __init__(self, settings: ExperimentSettings) -> None:
        self.settings = settings
        self.default = settings.default_arm
        self.weights = {a.name: float(a.weight) for a in settings.arms if a.name != settings.shadow}

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    def bucket(self, user: str) -> float:
        """The caller's point in [0, 1): the same for the same salt and user, on every server."""
        digest = hashlib.sha256(f"{self.settings.salt}:{user}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def choose(self, user: str | None, forced: str | None = None) -> str:
        """The arm for a request from ``user`` (None: anonymous); ``forced`` (X-Arm) wins if it names an arm."""
        if forced is not None:
            if forced not in self.weights and forced != self.settings.shadow:
                raise InvalidInputError(f"X-Arm: {forced!r} is not an arm; arms: {', '.join(self.names)}")
            return forced
        if user is None:
            if not self.settings.split_anonymous:
                return self.default
            import secrets

            point = secrets.randbelow(2**32) / 2**32
        else:
            point = self.bucket(user)
        total = sum(self.weights.values())
        names = self.names
        # consecutive slices; the last arm's slice is anchored at the top so raising it only adds users
        edge = 1.0
        for name in reversed(names):
            edge -= self.weights[name] / total
            if point >= edge - 1e-12:
                return name
        return names[0]

    def set_weights(self, weights: dict[str, float]) -> None:
        unknown = sorted(set(weights) - set(self.weights))
        if unknown:
            raise InvalidInputError(f"unknown arm(s) {unknown}; arms: {', '.join(self.names)}")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise InvalidInputError(f"weight of {name!r} is {weight!r}; weights are numbers >= 0")
        merged = {**self.weights, **{k: float(v) for k, v in weights.items()}}
        if sum(merged.values()) <= 0:
            raise InvalidInputError("the new weights sum to 0; at least one arm must get traffic")
        self.weights = merged

    def promote(self, name: str) -> None:
        """``name`` becomes the default and gets all traffic."""
        if name not in self.weights:
            raise InvalidInputError(f"cannot promote {name!r}: it is not a loaded arm; arms: {', '.join(self.names)}")
        self.weights = {n: (100.0 if n == name else 0.0) for n in self.weights}
        self.default = name
