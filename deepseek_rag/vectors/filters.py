"""A backend-neutral metadata filter: one expression, checked once, compiled by each backend.

The shape is the one Chroma and MongoDB users know::

    {"party": "acme"}                                   # equality
    {"year": [2021, 2022]}                              # any of (the first release's list form)
    {"price": {"$lte": 120}, "stock": {"$gt": 0}}       # several conditions: all must hold
    {"$or": [{"brand": "trail"}, {"$not": {"brand": {"$in": ["x", "y"]}}}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains``; ``$and`` / ``$or`` take a list of
expressions, ``$not`` one. The key ``doc_id`` is the document id itself; other keys are document metadata.
Range operators compare numbers only (a document whose value is not a number does not match); ``$contains``
takes a string and matches a string value containing it or a list value holding it; ``$ne`` / ``$nin`` also
match documents without the key, as in MongoDB.

This module parses, validates and evaluates in Python (:meth:`Filter.matches`, the reference every backend is
tested against); the SQLite store compiles to SQL (``storage/sql_filter.py``). It touches no index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from ..errors import InvalidInputError

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains")
RANGES = ("$gt", "$gte", "$lt", "$lte")
LOGICAL = ("$and", "$or", "$not")
MAX_DEPTH = 8
"""Nesting deeper than this is refused: such filters come from generated input, not people."""
MAX_VALUES = 10_000
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class Comparison:
    """``key op value``: one condition on one metadata key (or ``doc_id``)."""

    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    """All (``$and``) or any (``$or``) of the children."""

    op: str
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Negation:
    """``$not``: the child does not hold."""

    child: Node


Node = Union[Comparison, Group, Negation]


class Filter:
    """A parsed, validated filter expression. Build one with :meth:`parse`; it is immutable."""

    __slots__ = ("root",)

    def __init__(self, root: Node) -> None:
        self.root = root

    @classmethod
    def parse(cls, spec: Filter | Mapping[str, Any] | None) -> Filter | None:
        """A :class:`Filter` from the dict form above (None or ``{}``: no filter)."""
        if spec is None or isinstance(spec, Filter):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidInputError(
                f"filters must be a dict such as {{'party': 'acme'}} or {{'price': {{'$lte': 120}}}}, "
                f"got {type(spec).__name__}"
            )
        if not spec:
            return None
        return cls(_parse_expression(spec, 1))

    @classmethod
    def all_of(cls, *filters: Filter | Mapping[str, Any] | None) -> Filter | None:
        """The conjunction of ``filters`` (None entries are skipped)."""
        parsed = [f for f in (cls.parse(x) for x in filters) if f is not None]
        if not parsed:
            return None
        if len(parsed) == 1:
            return parsed[0]
        return cls(Group("$and", tuple(f.root for f in parsed)))

    def keys(self) -> set[str]:
        """Every key the expression reads."""
        found: set[str] = set()
        _walk(self.root, lambda c: found.add(c.key))
        return found

    def matches(self, metadata: Mapping[str, Any], doc_id: str | None = None) -> bool:
        """Whether a document with this metadata (and id) passes: the reference semantics."""
        return _matches(self.root, metadata, doc_id)

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict form (operators spelled out); ``Filter.parse(f.to_dict())`` equals ``f``."""
        return _to_dict(self.root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Filter({self.to_dict()!r})"


# ------------------------------------------------------------------------------------------- parsing
def _parse_expression(spec: Mapping[str, Any], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise InvalidInputError(f"filter is nested more than {MAX_DEPTH} levels deep; flatten it")
    if not isinstance(spec, Mapping) or not spec:
        raise InvalidInputError(f"a filter expression must be a non-empty dict, got {spec!r}")
    parts: list[Node] = []
    for key, value in spec.items():
        if isinstance(key, str) and key.startswith("$"):
            parts.append(_parse_logical(key, value, depth))
        else:
            parts.append(_parse_field(_check_key(key), value, depth))
    return parts[0] if len(parts) == 1 else Group("$and", tuple(parts))


def _parse_logical(op: str, value: Any, depth: int) -> Node:
    if op not in LOGICAL:
        where = "inside a key's condition" if op in COMPARISONS else "in a filter"
        raise InvalidInputError(
            f"unknown filter operator {op!r} {where}; at the top level use {', '.join(LOGICAL)}, "
            f"and under a key one of {', '.join(COMPARISONS)} (e.g. {{'price': {{'$lte': 120}}}})"
        )
    if op == "$not":
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"$not takes one filter expression (a dict), got {value!r}")
        return Negation(_parse_expression(value, depth + 1))
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInputError(f"{op} takes a non-empty list of filter expressions, got {value!r}")
    return Group(op, tuple(_parse_expression(item, depth + 1) for item in value))


def _parse_field(key: str, value: Any, depth: int) -> Node:
    if isinstance(value, Mapping):
        if not value:
            raise InvalidInputError(f"filter on {key!r} has an empty condition {{}}; give an operator such as $eq")
        conditions = []
        for op, operand in value.items():
            if op in LOGICAL and op == "$not":
                if not isinstance(operand, Mapping):
                    raise InvalidInputError(f"$not under {key!r} takes a condition dict, got {operand!r}")
                if depth + 1 > MAX_DEPTH:
                    raise InvalidInputError(f"filter is nested more than {MAX_DEPTH} levels deep; flatten it")
                conditions.append(Negation(_parse_field(key, operand, depth + 1)))
                continue
            if op not in COMPARISONS:
                raise InvalidInputError(
                    f"unknown filter operator {op!r} on {key!r}; use one of {', '.join(COMPARISONS)}"
                )
            conditions.append(Comparison(key, op, _check_operand(key, op, operand)))
        return conditions[0] if len(conditions) == 1 else Group("$and", tuple(conditions))
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # a numpy array of values
        value = value.tolist()
    if isinstance(value, (list, tuple, set, frozenset)):
        return Comparison(key, "$in", _check_operand(key, "$in", list(value)))
    return Comparison(key, "$eq", _check_operand(key, "$eq", value))


def _check_key(key: Any) -> str:
    if not isinstance(key, str):
        raise InvalidInputError(f"filter key {key!r} must be a string (a metadata field name), got {type(key).__name__}")
    if not key or not set(key) <= _KEY_CHARS:
        raise InvalidInputError(f"filter key {key!r} must be letters, digits, '_', '-' or '.'")
    return key


def _scalar(key: str, op: str, value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalars
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and value != value:
            raise InvalidInputError(f"filter {key!r} {op}: NaN matches nothing; give a number")
        return value
    raise InvalidInputError(
        f"filter {key!r} {op}: value {value!r} must be a string, number, boolean or null, got {type(value).__name__}"
    )


def _check_operand(key: str, op: str, value: Any) -> Any:
    if op in ("$in", "$nin"):
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise InvalidInputError(f"filter {key!r} {op} takes a list of values, got {value!r}")
        values = [_scalar(key, op, v) for v in value]
        if not values:
            raise InvalidInputError(f"filter {key!r} has an empty list of values; give at least one")
        if len(values) > MAX_VALUES:
            raise InvalidInputError(f"filter {key!r} {op} has {len(values):,} values; the limit is {MAX_VALUES:,}")
        return tuple(values)
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        raise InvalidInputError(f"filter {key!r} {op} takes one value, got {value!r}; use $in for a list")
    value = _scalar(key, op, value)
    if op in RANGES and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidInputError(f"filter {key!r} {op} compares numbers; got {value!r} ({type(value).__name__})")
    if op == "$exists" and not isinstance(value, bool):
        raise InvalidInputError(f"filter {key!r} $exists takes true or false, got {value!r}")
    if op == "$contains" and not isinstance(value, str):
        raise InvalidInputError(
            f"filter {key!r} $contains takes a string (text inside a string value, or an item of a list value), "
            f"got {value!r}; compare numbers with $eq or a range"
        )
    return value


# ------------------------------------------------------------------------------------------- evaluation
_MISSING = object()


def _lookup(metadata: Mapping[str, Any], key: str, doc_id: str | None) -> Any:
    if key == "doc_id":
        return doc_id if doc_id is not None else metadata.get("doc_id", _MISSING)
    return metadata.get(key, _MISSING)


def _numeric(value: Any) -> bool:
    """Numbers and booleans: SQLite's json_extract reads JSON true/false as 1/0, and so do we."""
    return isinstance(value, (int, float))


def _equal(stored: Any, wanted: Any) -> bool:
    if stored is None or wanted is None:
        return stored is None and wanted is None
    if _numeric(stored) and _numeric(wanted):
        return float(stored) == float(wanted)
    return type(stored) is type(wanted) and stored == wanted


def _compare(c: Comparison, metadata: Mapping[str, Any], doc_id: str | None) -> bool:
    stored = _lookup(metadata, c.key, doc_id)
    op, value = c.op, c.value
    present = stored is not _MISSING
    if op == "$exists":
        return (present and stored is not None) == value
    if op == "$eq":
        return present and _equal(stored, value)
    if op == "$ne":
        return not (present and _equal(stored, value))
    if op == "$in":
        return present and any(_equal(stored, v) for v in value)
    if op == "$nin":
        return not (present and any(_equal(stored, v) for v in value))
    if op == "$contains":
        if isinstance(stored, str):
            return value in stored
        if isinstance(stored, list):
            return any(isinstance(item, str) and item == value for item in stored)
        return False
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return False  # ranges compare numbers; strings, lists and missing keys do not match
    return {"$gt": stored > value, "$gte": stored >= value, "$lt": stored < value, "$lte": stored <= value}[op]


def _matches(node: Node, metadata: Mapping[str, Any], doc_id: str | None) -> bool:
    if isinstance(node, Comparison):
        return _compare(node, metadata, doc_id)
    if isinstance(node, Negation):
        return not _matches(node.child, metadata, doc_id)
    results = (_matches(child, metadata, doc_id) for child in node.children)
    return all(results) if node.op == "$and" else any(results)


def _walk(node: Node, visit: Any) -> None:
    if isinstance(node, Comparison):
        visit(node)
    elif isinstance(node, Negation):
        _walk(node.child, visit)
    else:
        for child in node.children:
            _walk(child, visit)


def _to_dict(node: Node) -> dict[str, Any]:
    if isinstance(node, Comparison):
        value = list(node.value) if isinstance(node.value, tuple) else node.value
        return {node.key: {node.op: value}}
    if isinstance(node, Negation):
        return {"$not": _to_dict(node.child)}
    return {node.op: [_to_dict(child) for child in node.children]}
