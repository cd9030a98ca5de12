"""``deepseek-rag compare``: two indexes on the same judged queries — each metric, the paired difference, tests."""

from __future__ import annotations

import json

import click

from .common import retrieval_kwargs, retrieval_options


@click.command("compare")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="BEIR folder the indexes hold.")
@click.argument("index_a", type=click.Path(file_okay=False))
@click.argument("index_b", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option("--metric", "metrics", multiple=True, default=("ndcg@10", "recall@100"), show_default=True,
              help="ndcg@K, recall@K or mrr@K (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and randomization test.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@retrieval_options
def compare_command(data, index_a, index_b, split, metrics, seed, as_json, mode, fusion, sparse_weight) -> None:
    """Compare two indexes of one corpus (e.g. base vs fine-tuned) on the same queries, with paired tests.

    For each metric: both means, B − A with a 95% bootstrap CI, a paired randomization test and a paired
    t-test, and the share of queries B wins, ties and loses.

    \b
    Example:
      deepseek-rag compare --data datasets/scifact base.idx tuned.idx --metric ndcg@10 --json
    """
    from ..comparison import paired_comparison
    from ..document_index import DocumentIndex
    from ..evaluation import load_beir_split, parse_metric, rank_documents

    for metric in metrics:
        parse_metric(metric)
    split_data = load_beir_split(data, split)
    runs, indexes = [], []
    for path in (index_a, index_b):
        indexes.append(DocumentIndex.load(path, writable=False))
        retriever = indexes[-1].as_retriever(**retrieval_kwargs(mode, fusion, sparse_weight))
        runs.append(rank_documents(retriever, split_data))
    result = {"a": index_a, "b": index_b, "split": split,
              **paired_comparison(runs[0], runs[1], split_data.qrels, metrics, seed=seed)}
    from ..tracking import log_comparison

    log_comparison(result, indexes[1])  # to B's fine-tuning run, when it has one
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"A = {index_a}\nB = {index_b}\n{result['queries']} judged queries ({split})\n")
    click.echo(f"{'metric':<12}{'A':>8}{'B':>8}{'B-A':>9}  {'95% CI':<19}{'p rand.':>8}{'p t':>8}  win/tie/loss")
    for metric, row in result["metrics"].items():
        ci = f"[{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]"
        click.echo(f"{metric:<12}{row['a']:>8.4f}{row['b']:>8.4f}{row['difference']:>+9.4f}  {ci:<19}"
                   f"{row['p_randomization']:>8.4f}{row['p_t_test']:>8.4f}  "
                   f"{row['wins']:.0%}/{row['ties']:.0%}/{row['losses']:.0%}")
    click.echo("\nCI: bootstrap (BCa, 10,000 resamples); p rand.: paired randomization test; p t: paired t-test.")
