"""``deepseek-rag densify``: give a lexical-only index its vector side, as a new version."""

from __future__ import annotations

import time

import click

from .common import encoder_options, make_encoder, show_progress, wait_option


@click.command("densify")
@click.argument("index_dir", type=click.Path())
@click.option("--index-spec", default="auto", show_default=True,
              help="FAISS factory string for the new vectors, or auto (by corpus size).")
@click.option("--force", is_flag=True, help="Embed even when the encoder cannot read most of the index's text.")
@encoder_options
@wait_option
@click.pass_context
def densify_command(ctx, index_dir, index_spec, force, model, adapter, dtype, device, wait) -> None:
    """Embed every chunk of a lexical-only index (built with --dense off or auto) with an encoder that reads its
    text, and publish the result as a new version: readers see the BM25-only version until it is published, and
    the index is hybrid from then on, with this encoder recorded as its own.

    \b
    Example:
      deepseek-rag densify laws.idx --model models/bge-small-zh-v1.5
    """
    from ..document_index import DocumentIndex

    started = time.perf_counter()
    index = DocumentIndex.load(index_dir, lock_timeout=wait)
    try:
        index.lock_for_writing()  # before loading the model: a second writer learns at once who holds the index
        chunks = index.densify(make_encoder(model, adapter, dtype, device), index_spec=index_spec, force=force,
                               progress=show_progress(ctx))
        index.save()
        if index.dense_note:
            click.echo(f"note: {index.dense_note}", err=True)
    finally:
        index.close()
    click.echo(f"embedded {chunks} chunks ({index.snapshot().spec}) in {time.perf_counter() - started:.1f}s → "
               f"{index_dir} (version {index.snapshot().version})")
