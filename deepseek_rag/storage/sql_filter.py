"""Compile a :class:`~deepseek_rag.vectors.filters.Filter` to an SQLite ``WHERE`` clause over the chunk store.

Metadata lives as JSON in ``documents.metadata`` (alias ``d``); a key is read with ``json_extract`` and typed
with ``json_type``, so a range only ever compares numbers and a string ``"120"`` never passes ``$lte: 120``.
Every clause evaluates to 0 or 1, never NULL, so ``$not`` inverts exactly. The semantics are those of
:meth:`Filter.matches`; tests check the two agree on the same documents.
"""

from __future__ import annotations

from typing import Any

from ..vectors.filters import Comparison, Filter, Group, Negation, Node

_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def filter_sql(filter_: Filter) -> tuple[str, list[Any]]:
    """``(where, params)`` selecting the documents (alias ``d``) that pass ``filter_``."""
    params: list[Any] = []
    return _node_sql(filter_.root, params, negated=False), params


def _path(key: str) -> str:
    return '$."' + key + '"'  # keys are letters, digits, _ - . only (checked when parsed)


def _bind(value: Any, params: list[Any]) -> str:
    params.append(int(value) if isinstance(value, bool) else value)
    return "?"


def _node_sql(node: Node, params: list[Any], *, negated: bool) -> str:
    if isinstance(node, Negation):
        return f"(NOT {_node_sql(node.child, params, negated=not negated)})"
    if isinstance(node, Group):
        joiner = " AND " if node.op == "$and" else " OR "
        return "(" + joiner.join(_node_sql(child, params, negated=negated) for child in node.children) + ")"
    if not negated:
        sargable = _indexable_sql(node, params)
        if sargable is not None:
            return sargable
    return _comparison_sql(node, params)


def _indexable_sql(c: Comparison, params: list[Any]) -> str | None:
    """Where NULL cannot be inverted (no ``$not`` above), equality, any-of and ranges are written so SQLite can
    use an index on ``json_extract(metadata, '$."key"')`` (``IndexSettings.filter_fields``); None otherwise."""
    if c.key == "doc_id":
        value_sql, type_sql = "d.doc_id", None
    else:
        path = _path(c.key)
        value_sql, type_sql = f"json_extract(d.metadata, '{path}')", f"json_type(d.metadata, '{path}')"
    op, value = c.op, c.value
    if op in _RANGE_SQL:
        if type_sql is None:
            return "(0)"  # a document id is text: ranges compare numbers
        return f"({value_sql} {_RANGE_SQL[op]} {_bind(value, params)} AND {type_sql} IN ('integer', 'real'))"
    if op in ("$eq", "$in"):
        values = [value] if op == "$eq" else list(value)
        if any(v is None for v in values):
            return None
        placeholders = ", ".join(_bind(v, params) for v in values)
        # typed comparison: TEXT never equals a number, JSON true/false read as 1/0; arrays/objects read as JSON text
        guard = f" AND {type_sql} NOT IN ('array', 'object')" if type_sql else ""
        return f"({value_sql} IN ({placeholders}){guard})"
    return None


def _comparison_sql(c: Comparison, params: list[Any]) -> str:
    if c.key == "doc_id":
        value_sql, type_sql = "d.doc_id", "'text'"
    else:
        path = _path(c.key)
        value_sql = f"json_extract(d.metadata, '{path}')"
        type_sql = f"json_type(d.metadata, '{path}')"
    op, value = c.op, c.value
    if op == "$exists":
        return f"({type_sql} IS NOT NULL AND {type_sql} != 'null')" if value else f"({type_sql} IS NULL OR {type_sql} = 'null')"
    if op in ("$eq", "$ne"):
        clause = _equals_sql(value_sql, type_sql, value, params)
        return clause if op == "$eq" else f"(NOT {clause})"
    if op in ("$in", "$nin"):
        clause = "(" + " OR ".join(_equals_sql(value_sql, type_sql, v, params) for v in value) + ")"
        return clause if op == "$in" else f"(NOT {clause})"
    if op == "$contains":
        text = f"(CASE WHEN {type_sql} = 'text' THEN instr({value_sql}, {_bind(value, params)}) > 0 ELSE 0 END)"
        if c.key == "doc_id":
            return text
        item = (
            f"(CASE WHEN {type_sql} = 'array' THEN EXISTS (SELECT 1 FROM json_each(d.metadata, '{_path(c.key)}') "
            f"WHERE json_each.type = 'text' AND json_each.value = {_bind(value, params)}) ELSE 0 END)"
        )
        return f"({text} OR {item})"
    return f"(COALESCE({type_sql} IN ('integer', 'real') AND {value_sql} {_RANGE_SQL[op]} {_bind(value, params)}, 0))"


def _equals_sql(value_sql: str, type_sql: str, value: Any, params: list[Any]) -> str:
    """1 when the stored value equals ``value`` (numbers and booleans as numbers, strings as strings), else 0."""
    if value is None:
        return f"(COALESCE({type_sql} = 'null', 0))"
    if isinstance(value, str):
        return f"(COALESCE({type_sql} = 'text' AND {value_sql} = {_bind(value, params)}, 0))"
    return f"(COALESCE({type_sql} IN ('integer', 'real', 'true', 'false') AND {value_sql} = {_bind(value, params)}, 0))"
