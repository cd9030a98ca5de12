"""``deepseek-rag query`` and ``info``: search an index, and show what it holds."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from .common import echo_json, retrieval_kwargs, retrieval_options, search_encoder_options, search_overrides


@click.command("query")
@click.argument("index_dir", type=click.Path())
@click.argument("text")
@click.option("--top-k", type=int, default=5, show_default=True, help="Results to return.")
@click.option("--level", type=click.Choice(["chunk", "document"]), default="chunk", show_default=True)
@click.option("--expand", type=int, default=0, show_default=True, help="Neighbouring chunks to add on each side.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE|JSON",
              help='Metadata filter (repeatable): KEY=VALUE, or a JSON expression such as \'{"year": {"$gte": 2020}}\'. '
                   'A VALUE is read as JSON when it is a JSON scalar: pages=1 matches the number 1, draft=true the '
                   'boolean, note=null a null; quote it to match the string (year=\'"2021"\'); anything else '
                   '(file_type=.pdf) is a string. Repeat a key for any of its values. A key no document has is '
                   'named on stderr when nothing matches.')
@click.option("--focus", "focus_documents", default="auto", show_default=True, callback=lambda c, p, v: _focus(v),
              help="auto: rank inside the document the query names (its title) when it can fill --top-k; N: rank "
                   "documents first and return chunks of the best N only; 0: off (plain ranking).")
@click.option("--window-tokens", type=int, default=None, metavar="N",
              help="Grow each hit to a window of about N tokens around the matched chunk (exact character range); "
                   "not with --expand.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@retrieval_options
@search_encoder_options
def query_command(index_dir, text, top_k, level, expand, filters, focus_documents, window_tokens, as_json, mode, fusion,
                  sparse_weight, model, allow_int8, threads) -> None:
    """Search an index (its current version; nothing is written).

    \b
    Examples:
      deepseek-rag query contracts.idx "termination for convenience" --top-k 3
      deepseek-rag query contracts.idx "governing law" --level document --json
      deepseek-rag query contracts.idx "BRCA1 mutation" --mode sparse
      deepseek-rag query contracts.idx "Acme lease: who repairs the roof?" --focus 1
      deepseek-rag query contracts.idx "cap on liability" --window-tokens 384
      deepseek-rag query shop.idx "hiking boots" --filter '{"price": {"$lte": 120}}'
      deepseek-rag query contracts.idx "notice period" --model contracts-onnx    # its ONNX export
      deepseek-rag query papers.idx "sample size" --filter pages=1 --filter file_type=.pdf
    """
    from ..document_index import DocumentIndex

    overrides = search_overrides(model, allow_int8, threads)
    parsed = parse_filters(filters)
    index = DocumentIndex.load(index_dir, writable=False, encoder_overrides=overrides)
    retriever = index.as_retriever(
        top_k=top_k, expand_neighbors=expand, focus_documents=focus_documents, window_tokens=window_tokens,
        **retrieval_kwargs(mode, fusion, sparse_weight),
    )
    if level == "document":
        results = retriever.retrieve_documents(text, filters=parsed)
        if not results:
            note_unknown_filter_keys(index, parsed, index_dir)
        if as_json:
            echo_json({"query": text, "documents": [asdict(d) for d in results]})
            return
        for rank, doc in enumerate(results, 1):
            best = doc.hits[0]
            click.echo(f"{rank}. {doc.doc_id}  score={doc.score:.3f}  best chars {best.start}-{best.end}")
        return
    hits = retriever.retrieve(text, filters=parsed)
    if not hits:
        note_unknown_filter_keys(index, parsed, index_dir)
    if as_json:
        echo_json({"query": text, "hits": [asdict(h) for h in hits]})
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank}. {hit.doc_id} [chars {hit.start}-{hit.end}] score={hit.score:.3f}")
        click.echo("   " + " ".join(hit.text.split())[:300])


def _focus(value: str) -> int | str:
    """``--focus``: a number when it reads as one; the retriever checks the rest, naming the value."""
    try:
        return int(value)
    except ValueError:
        return value


def note_unknown_filter_keys(index: Any, filters: dict[str, Any] | None, index_dir: str) -> None:
    """Nothing matched: say so on stderr when the filter names a key that no document of the index has."""
    from ..vectors.filters import Filter

    parsed = Filter.parse(filters)
    if parsed is None:
        return
    known = index.snapshot().metadata_keys()
    for key in sorted(parsed.keys() - known - {"doc_id"}):
        listed = ", ".join(sorted(known | {"doc_id"}))
        click.echo(f"note: no document in {index_dir} has the metadata key {key!r}, so the filter on it matches "
                   f"nothing; the keys are: {listed}", err=True)


def parse_filters(filters: tuple[str, ...]) -> dict[str, Any] | None:
    """``--filter`` values: JSON objects are merged as expressions; ``KEY=VALUE`` pairs become any-of lists."""
    from ..ingest.decoding import describe_surrogate, lone_surrogate

    parsed: dict[str, Any] = {}
    pairs: dict[str, list[Any]] = {}
    for item in filters:
        surrogate = lone_surrogate(item)
        if surrogate is not None:
            raise click.ClickException(f"--filter {item!r} holds {describe_surrogate(item, surrogate)}; pass UTF-8 text")
        if item.lstrip().startswith("{"):
            try:
                expression = json.loads(item)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"{item!r} is not valid JSON ({exc})", param_hint="--filter") from None
            if not isinstance(expression, dict):
                raise click.BadParameter(f"{item!r} must be a JSON object", param_hint="--filter")
            parsed.setdefault("$and", []).append(expression)
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE or a JSON object", param_hint="--filter")
        pairs.setdefault(key, []).append(_scalar(value))
    for key, values in pairs.items():
        parsed.setdefault("$and", []).append({key: values})
    return parsed or None


def _scalar(value: str) -> Any:
    """A KEY=VALUE value as the JSON scalar it spells (``2021``, ``true``, ``null``, ``"2021"`` for the string),
    else the string itself (``.pdf``, ``acme``)."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, (int, float, bool, str)) or parsed is None else value


@click.command("info")
@click.argument("index_dir", type=click.Path())
@click.option("--ids", is_flag=True, help="Also list the document ids.")
@search_encoder_options
def info_command(index_dir, ids, model, allow_int8, threads) -> None:
    """Show an index's version, counts, spec, sizes and encoder."""
    from ..document_index import DocumentIndex

    index = DocumentIndex.load(index_dir, writable=False, encoder_overrides=search_overrides(model, allow_int8, threads))
    info = index.info()
    if ids:
        info["document_ids"] = index.document_ids()
    echo_json(info, indent=2)
