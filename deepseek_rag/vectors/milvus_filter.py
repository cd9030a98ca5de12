"""Compile a :class:`~deepseek_rag.vectors.filters.Filter` to a Milvus boolean expression over a chunk collection.

Document metadata is the JSON field ``metadata``; ``doc_id`` is a VARCHAR field of its own. Milvus compares JSON
values in three-valued logic — a comparison on a missing key, or on a value of another type, is null, and
``not null`` is null, not true — so a row also carries its metadata split by type: ``meta_num`` (numbers),
``meta_bool`` (booleans as 0/1), ``meta_str`` (strings), ``meta_list`` (lists), and ``null_keys`` (keys whose value
is JSON null). Every test is ``exists part["k"] and part["k"] <op> value`` on the part of the right type, which is
never null, so ``not (...)`` inverts exactly: ``$ne``/``$nin`` match documents without the key (as in MongoDB),
ranges compare numbers only, ``== 1`` matches ``true`` (as SQLite and the reference, :meth:`Filter.matches`, do).

One case cannot be pushed exactly: ``$contains`` with ``%`` or ``_`` in its text (milvus-lite's LIKE has no
escape). :func:`filter_expression` returns None for such a filter and the caller evaluates it another way.
Tests check the expression against the reference on random filters (``tests/test_milvus_filters.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .filters import Comparison, Filter, Group, Negation, Node

_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FALSE, TRUE = "false", "true"


class _NotExpressible(Exception):
    pass


def filter_expression(filter_: Filter | None) -> str | None:
    """The expression selecting the chunks whose document passes ``filter_`` ("" for no filter), or None when the
    filter cannot be written exactly in Milvus's language."""
    if filter_ is None:
        return ""
    try:
        return _node(filter_.root)
    except _NotExpressible:
        return None


def ids_expression(allowed: Iterable[int] | None = None, excluded: Iterable[int] | None = None) -> str:
    """``id in [...]`` / ``id not in [...]`` (either may be None; "" when neither restricts)."""
    parts = []
    if allowed is not None:
        values = [int(i) for i in allowed]
        parts.append(f"id in [{','.join(map(str, values))}]" if values else FALSE)
    if excluded is not None:
        values = [int(i) for i in excluded]
        if values:
            parts.append(f"id not in [{','.join(map(str, values))}]")
    return " and ".join(f"({p})" for p in parts)


def all_of(*expressions: str) -> str:
    """The conjunction of the non-empty ``expressions``."""
    kept = [e for e in expressions if e]
    if not kept:
        return ""
    return kept[0] if len(kept) == 1 else " and ".join(f"({e})" for e in kept)


def literal(value: Any) -> str:
    """A Milvus literal: strings double-quoted with JSON escapes, numbers as JSON, booleans lower case."""
    if isinstance(value, bool):
        return TRUE if value else FALSE
    return json.dumps(value, ensure_ascii=False)


def _node(node: Node) -> str:
    if isinstance(node, Negation):
        return f"not ({_node(node.child)})"
    if isinstance(node, Group):
        joiner = " and " if node.op == "$and" else " or "
        return "(" + joiner.join(f"({_node(child)})" for child in node.children) + ")"
    return _comparison(node)


def _typed(part: str, key: str) -> str:
    return f"{part}[{literal(key)}]"  # keys are letters, digits, _ - . only (checked when parsed)


def _comparison(c: Comparison) -> str:
    if c.key == "doc_id":
        return _doc_id(c)
    key, op, value = c.key, c.op, c.value
    if op == "$exists":
        clause = f"exists {_typed('metadata', key)}"  # present and not null
        return clause if value else f"not ({clause})"
    if op in ("$eq", "$ne"):
        clause = _equals(key, value)
        return clause if op == "$eq" else f"not ({clause})"
    if op in ("$in", "$nin"):
        clause = "(" + " or ".join(f"({_equals(key, v)})" for v in value) + ")"
        return clause if op == "$in" else f"not {clause}"
    if op == "$contains":
        if "%" in value or "_" in value:
            raise _NotExpressible(value)
        text, items = _typed("meta_str", key), _typed("meta_list", key)
        return (f"((exists {text} and {text} like {literal('%' + value + '%')}) or "
                f"(exists {items} and json_contains({items}, {literal(value)})))")
    number = _typed("meta_num", key)
    return f"(exists {number} and {number} {_RANGE[op]} {literal(value)})"


def _equals(key: str, value: Any) -> str:
    """Typed equality: strings against strings, numbers against numbers and booleans (true is 1)."""
    if value is None:
        return f"array_contains(null_keys, {literal(key)})"
    if isinstance(value, str):
        text = _typed("meta_str", key)
        return f"(exists {text} and {text} == {literal(value)})"
    number, flag = _typed("meta_num", key), _typed("meta_bool", key)
    wanted = literal(int(value) if isinstance(value, bool) else value)
    return f"((exists {number} and {number} == {wanted}) or (exists {flag} and {flag} == {wanted}))"


def _doc_id(c: Comparison) -> str:
    op, value = c.op, c.value
    if op == "$exists":
        return TRUE if value else FALSE
    if op in ("$eq", "$ne", "$in", "$nin"):
        values = [value] if op in ("$eq", "$ne") else list(value)
        strings = [v for v in values if isinstance(v, str)]
        clause = f"doc_id in [{', '.join(literal(v) for v in strings)}]" if strings else FALSE
        return clause if op in ("$eq", "$in") else f"not ({clause})"
    if op == "$contains":
        if "%" in value or "_" in value:
            raise _NotExpressible(value)
        return f"doc_id like {literal('%' + value + '%')}"
    return FALSE  # a document id is text: ranges compare numbers
