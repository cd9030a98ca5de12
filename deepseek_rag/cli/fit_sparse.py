"""``deepseek-rag fit-sparse``: learn query-term weights and a field prior for an index's BM25 side, and attach them."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .common import wait_option


@click.command("fit-sparse")
@click.argument("index_dir", type=click.Path())
@click.option("--beir", "beir_dir", type=click.Path(file_okay=False), default=None,
              help="BEIR folder whose queries.jsonl + qrels/<split>.tsv are the training pairs (documents: the index's).")
@click.option("--split", default="train", show_default=True, help="qrels split to fit on.")
@click.option("--field", default=None, metavar="KEY",
              help="Also fit a field prior on this metadata key (a department, a category): P(answer's value | query).")
@click.option("--prior-weight", type=click.FloatRange(0, min_open=True), default=0.5, show_default=True,
              help="Scale of the field prior's log-probability added to BM25 scores (0.5: best on cmd_im_sample's dev split).")
@click.option("--term-weights/--no-term-weights", default=True, show_default=True,
              help="Fit query-term weights (with --no-term-weights, --field is required).")
@click.option("--out", "model_file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the query model (JSON); the index records its path and checksum.")
@click.option("--attach/--no-attach", default=True, show_default=True,
              help="Publish the index's next version with the model attached (else only write the file).")
@wait_option
def fit_sparse_command(index_dir, beir_dir, split, field, prior_weight, term_weights, model_file, attach, wait) -> None:
    """Fit a query model on training pairs, under INDEX_DIR's own BM25 analysis, and attach it: sparse and hybrid
    searches then weigh each query term by how well it predicted the relevant document in training (BM25 alone
    weighs it by rarity), and, with --field, add the learned prior of the document's category.

    \b
    Examples:
      deepseek-rag fit-sparse med.idx --beir datasets/cmd_im_sample --field title --out med.idx.query-model.json
      deepseek-rag fit-sparse shop.idx --beir shop-clicks --field category --no-term-weights --out shop-prior.json
    """
    from ..document_index import DocumentIndex
    from ..evaluation import load_beir_split
    from ..sparse.query_model import fit_query_model

    if beir_dir is None:
        raise click.UsageError("give the training pairs: --beir DIR (queries.jsonl and qrels/<split>.tsv)")
    if not term_weights and field is None:
        raise click.UsageError("--no-term-weights leaves nothing to fit without --field KEY")
    target = Path(model_file).resolve()
    if target.is_dir():
        raise click.UsageError(f"--out {model_file} is a folder; give a file name for the query model")
    if not target.parent.is_dir():
        raise click.UsageError(f"--out {model_file}: folder {target.parent} does not exist")
    pairs = load_beir_split(beir_dir, split)
    started = time.perf_counter()
    index = DocumentIndex.load(index_dir, lock_timeout=wait, writable=attach)
    try:
        if attach:
            index.lock_for_writing()  # a second writer learns at once who holds the index, before the fit
        model = fit_query_model(index, pairs.queries, pairs.qrels, term_weights=term_weights, field=field,
                                prior_weight=prior_weight)
        model.save(target)
        fitted = time.perf_counter() - started
        parts = [p for p, on in (("term weights", model.term_weights), (f"field prior on {field!r}", model.field_prior)) if on]
        click.echo(f"fitted {' and '.join(parts)} on {model.fitted_on['pairs']} training pairs in {fitted:.1f}s → {target}")
        if attach:
            index.set_query_model(str(target))
            index.save()
            click.echo(f"attached to {index_dir} (version {index.snapshot().version}): sparse and hybrid searches use it")
    finally:
        index.close()
