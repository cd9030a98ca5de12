"""``deepseek-rag export``: write an index's (or a model's) encoder as ONNX, TorchScript or a Triton repository."""

from __future__ import annotations

import json

import click


@click.command("export")
@click.argument("source", required=False, type=click.Path())
@click.option("--format", "export_format", type=click.Choice(["onnx", "torchscript", "triton"]), default="onnx",
              show_default=True, help="onnx: ONNX Runtime graphs; torchscript: traced torch modules; triton: a Triton "
                                      "model repository of ONNX graphs (one model per side).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write (created).")
@click.option("--int8", is_flag=True, help="Quantize weights to int8 (dynamic, per channel; onnx and triton only). "
                                           "Its vectors differ slightly: an index built in float32 opens with it only "
                                           "with --allow-int8.")
@click.option("--side", type=click.Choice(["both", "query", "document"]), default="both", show_default=True,
              help="Export one side only (a query server needs only the query graph).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False), default=None,
              help="LoRA adapter folder to merge in (a model SOURCE only; an index names its own).")
@click.option("--name", default="encoder", show_default=True, help="Triton model name prefix: NAME_query, NAME_document.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export in --out.")
def export_command(source, export_format, out, int8, side, adapter, name, overwrite) -> None:
    """Export the encoder of SOURCE — an index directory or a model folder (default: the bundled
    all-MiniLM-L6-v2) — with LoRA adapters merged into each side's graph, pooling and normalisation inside.

    \b
    `--model OUT` (or DualEncoder(model=OUT)) then loads it with the matching backend; an index built with the
    source encoder opens with a float32 export, because the export records the same fingerprint.

    \b
    Examples:
      deepseek-rag export contracts.idx --format onnx --out contracts-onnx
      deepseek-rag query contracts.idx "notice period" --model contracts-onnx
      deepseek-rag export --format onnx --int8 --out minilm-int8
      deepseek-rag query contracts.idx "notice period" --model minilm-int8 --allow-int8
      deepseek-rag export path/to/e5-small --adapter ft-adapter --format triton --name e5 --out model_repository
    """
    from ..encoding.export import export_encoder, source_encoder
    from ..encoding.export_folder import read_export_manifest

    encoder = source_encoder(source, adapter=adapter)
    sides = ("query", "document") if side == "both" else (side,)
    folder = export_encoder(encoder, out, format=export_format, int8=int8, sides=sides, name=name, overwrite=overwrite)
    manifest = read_export_manifest(folder)
    click.echo(json.dumps({"out": str(folder), "format": export_format, "precision": manifest.precision,
                           "graphs": manifest.graphs, "dim": manifest.dim, "base_fingerprint": manifest.base_fingerprint,
                           "adapter_hashes": manifest.adapter_hashes, "probe_cosine_min": manifest.probe_cosine_min},
                          indent=2))
