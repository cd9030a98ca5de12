"""``deepseek-rag finetune`` and ``deepseek-rag finetune-export`` (added to the core CLI by entry points).

Thin: options become a :class:`FinetuneConfig`, pairs come from ``pairs.py`` / ``cold_start.py``, the work
is :func:`deepseek_rag_finetune.trainer.finetune`. A user's mistake ends as one line (``ClickException``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from typing import Any

import click

from deepseek_rag.errors import DeepSeekRAGError

from .config import FinetuneConfig

logger = logging.getLogger(__name__)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_HELP = {f.name: f.metadata.get("help", "") for f in fields(FinetuneConfig)}
_DEFAULTS = FinetuneConfig()


def _opt(name: str, *decls: str, **kwargs: Any) -> Any:
    """A click option whose help and default come from the FinetuneConfig field ``name``."""
    kwargs.setdefault("help", _HELP[name])
    kwargs.setdefault("default", getattr(_DEFAULTS, name))
    kwargs.setdefault("show_default", True)
    return click.option(*(decls or ("--" + name.replace("_", "-"),)), name, **kwargs)


def _user_errors(func: Any) -> Any:
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except (DeepSeekRAGError, ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.command("finetune", context_settings=CONTEXT_SETTINGS)
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False), default=None,
              help="JSONL {query, positive, negative?|negatives?} or CSV/TSV with a query,positive[,negative] header.")
@click.option("--beir", "beir_dir", type=click.Path(file_okay=False), default=None,
              help="BEIR folder: pairs from qrels/<split>.tsv + corpus.jsonl; the corpus also feeds mining.")
@click.option("--spans", "spans_dir", type=click.Path(file_okay=False), default=None,
              help="BEIR folder with qrels/<split>_spans.jsonl {query-id, corpus-id, start, end}: pairs are (question, "
                   "the chunk holding the answer), chunked as the index chunks; --hard-negatives come from the same document.")
@click.option("--split", default=None,
              help="qrels split to train on: --beir reads qrels/<split>.tsv (default train); --spans reads "
                   "qrels/<split>_spans.jsonl (default: the folder's only one).")
@click.option("--exclude-held-out/--include-held-out", "exclude_held_out", default=True, show_default=True,
              help="--spans: leave out the documents deepseek_rag.evaluation.held_out picks (25%% by sha256 of the id), "
                   "the ones benchmarks/cuad_spans.py --split heldout measures.")
@click.option("--cold-start", "cold_start", type=click.Path(), default=None,
              help="No pairs? Make pseudo-pairs (title → passage, sentence → passage) from these documents.")
@click.option("--corpus", type=click.Path(), default=None, help="Passages to mine hard negatives from (files or BEIR corpus.jsonl).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Adapter folder to write.")
@click.option("--resume", type=click.Path(), default=None, help="Continue from OUT/checkpoints/step-N (or a run folder: its latest).")
@click.option("--merge-to", type=click.Path(file_okay=False), default=None,
              help="Also write a merged sentence-transformers model folder here.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="FinetuneConfig JSON (a run's checkpoints/step-N/config.json); options given here override it.")
@_opt("model", "--model", envvar="DEEPSEEK_RAG_MODEL")
@_opt("epochs")
@_opt("max_steps", type=int)
@_opt("batch_size")
@_opt("lr")
@_opt("lora_r")
@_opt("lora_alpha")
@_opt("target_modules", type=str, default=None, help="Comma-separated linear layer names; default: detected.")
@_opt("adapter_mode", type=click.Choice(["shared", "asymmetric", "query"]))
@_opt("projection_dim", type=int)
@_opt("loss", type=click.Choice(["infonce", "margin"]))
@_opt("temperature")
@_opt("symmetric", "--symmetric/--no-symmetric")
@_opt("hard_negatives")
@_opt("mining", type=click.Choice(["dense", "bm25"]))
@_opt("grad_accumulation")
@_opt("gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing")
@_opt("amp", type=click.Choice(["auto", "bf16", "fp16", "none"]))
@_opt("max_seq_length", type=int)
@_opt("dev_fraction")
@_opt("eval_every", type=int)
@_opt("patience", type=int)
@_opt("seed")
@_opt("device", type=str)
@click.option("--mlflow/--no-mlflow", "mlflow", default=None, help="Log to MLflow (default: when mlflow is installed).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.pass_context
@_user_errors
def finetune_command(ctx: click.Context, pairs_file, beir_dir, spans_dir, split, exclude_held_out, cold_start, corpus, out,
                     resume, merge_to, config_file, **options: Any) -> None:
    """Fine-tune the encoder with LoRA on (query, positive) pairs; write an adapter folder.

    \b
    Examples:
      deepseek-rag finetune --pairs pairs.jsonl --out my-adapter
      deepseek-rag finetune --beir datasets/scifact --split train --out sci-adapter --epochs 3 --hard-negatives 1
      deepseek-rag finetune --cold-start contracts/ --out contracts-adapter --max-steps 200
      deepseek-rag finetune --spans datasets/cuad --out cuad-adapter --adapter-mode query --hard-negatives 1 --mining bm25
      deepseek-rag finetune --pairs pairs.csv --out ad --adapter-mode asymmetric --merge-to merged-model
      torchrun --nproc_per_node 2 -m deepseek_rag_finetune --pairs pairs.jsonl --out ad   (DDP)
    Then: deepseek-rag index docs/ --out docs.idx --adapter my-adapter
    """
    from .pairs import load_pairs, passage_text, read_beir_pairs
    from .trainer import finetune

    sources = [s for s in (pairs_file, beir_dir, spans_dir, cold_start) if s]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --pairs FILE, --beir DIR, --spans DIR or --cold-start DOCS")
    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT}
    base = FinetuneConfig.from_json(config_file).to_dict() if config_file else {}
    config = FinetuneConfig.from_dict({**{k: v for k, v in options.items() if k not in base}, **base, **given})

    passages: list[str] | None = None
    if pairs_file:
        pairs = load_pairs(pairs_file)
    elif beir_dir:
        from deepseek_rag.ingest.loaders import load_beir_corpus

        pairs = read_beir_pairs(beir_dir, split or "train")
        passages = [passage_text(d.title, d.text) for d in load_beir_corpus(beir_dir)]
    elif spans_dir:
        pairs = _span_pairs(spans_dir, split, exclude_held_out, config)
    else:
        from deepseek_rag.ingest.loaders import load_documents

        from .cold_start import pseudo_pairs

        pairs = pseudo_pairs(load_documents([cold_start]))
        click.echo(f"made {len(pairs)} pseudo-pairs from {cold_start}", err=True)
    if corpus:
        from deepseek_rag.ingest.loaders import load_documents

        passages = [passage_text(d.title, d.text) for d in load_documents([corpus])]
    if not pairs:
        raise click.ClickException("no training pairs found")
    result = finetune(pairs, out, config, corpus=passages, resume_from=resume)
    if not result.report:  # not rank 0 under torchrun
        return
    report = result.report
    click.echo(json.dumps({k: report[k] for k in ("dev_before", "dev_after", "steps", "wall_seconds",
                                                  "trainable_share", "adapter_bytes")}))
    if merge_to:
        from .export import export_merged_model

        export_merged_model(out, merge_to, model=config.model, side=None if config.adapter_mode == "shared" else "query")
        click.echo(f"merged model → {merge_to}", err=True)
    click.echo(f"adapter → {out}  (use: --adapter {out})", err=True)


def _span_pairs(folder: str, split: str | None, exclude_held_out: bool, config: FinetuneConfig) -> list:
    """``--spans``: pairs from a span-labelled folder, cut as a default index cuts it with the base model."""
    from pathlib import Path

    from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig

    from .spans import read_span_labels, span_pairs

    if split is None:
        found = sorted(Path(folder, "qrels").glob("*_spans.jsonl"))
        split = found[0].name[: -len("_spans.jsonl")] if len(found) == 1 else "train"
    labels = read_span_labels(folder, split)
    total = len(labels.documents)
    if exclude_held_out:
        labels = labels.without_held_out()
    encoder = DualEncoder(EncoderConfig(model=config.model, dtype="float32", device=config.device))
    pairs = span_pairs(labels, encoder, negatives=config.hard_negatives, mining=config.mining)
    click.echo(f"{len(pairs)} span pairs from {len(labels.queries)} questions on {len(labels.documents)} documents"
               + (f" ({total - len(labels.documents)} held-out documents left out)" if exclude_held_out else ""), err=True)
    return pairs


@click.command("finetune-export", context_settings=CONTEXT_SETTINGS)
@click.argument("adapter", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--model", envvar="DEEPSEEK_RAG_MODEL", default=None, help="The adapter's base model (default: bundled MiniLM).")
@click.option("--side", type=click.Choice(["query", "document"]), default=None,
              help="For an asymmetric adapter: which side's adapter to merge.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty folder.")
@_user_errors
def export_command(adapter, out, model, side, overwrite) -> None:
    """Merge an adapter into a plain sentence-transformers model folder (no PEFT needed to load it).

    \b
    Example:
      deepseek-rag finetune-export my-adapter --out my-model
      deepseek-rag index docs/ --out docs.idx --model my-model
    """
    from .export import export_merged_model

    export_merged_model(adapter, out, model=model, side=side, overwrite=overwrite)
    click.echo(f"merged model → {out}")


def main() -> None:
    """``python -m deepseek_rag_finetune`` (what torchrun runs): the finetune command on its own."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    finetune_command(prog_name="deepseek-rag finetune")
