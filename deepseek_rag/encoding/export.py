"""Export a torch dual encoder to ONNX or TorchScript graphs, one per side, that ``DualEncoder(model=DIR)`` loads.

What goes into a graph: the side's transformer (its LoRA adapter merged, as ``TorchBackend.model_for(side)``
holds it), pooling, the projection and unit normalisation, so a graph maps token ids and attention masks
straight to the vectors an index stores. Keeping all of it inside the graph means one definition of pooling
(the torch backend's own function, traced), a Triton server or any other ONNX client gets final vectors
without re-implementing pooling, and only ``batch x dim`` floats leave the runtime instead of
``batch x tokens x hidden``. Batch size and sequence length stay dynamic (nothing is padded to 512).

The folder also gets the source encoder's tokenizer files (``save_pretrained``: what it tokenizes with) and a
manifest (``export_folder.py``) with the source's base fingerprint and adapter hashes: an index built with
the torch encoder opens with its float32 export. ``int8=True`` quantizes the graph's weights per channel
(ONNX Runtime's ``quantize_dynamic``: activations are quantized per batch at run time); the manifest says
int8 and so does the fingerprint, so it searches a float32 index only when asked to. Before the folder
appears (written aside, then renamed), probe texts are encoded both ways: a float32 export that does not
reproduce the torch vectors is an error, an int8 one records its lowest cosine.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from .export_folder import EXPORT_MANIFEST_NAME, INPUT_NAMES, OUTPUT_NAME, ExportManifest, is_export_folder
from .model_folder import SIDES

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript", "triton")
OPSET = 17
FLOAT32_PROBE_COSINE = 0.9999
_PROBE_TEXTS = (
    "Either party may terminate this agreement with ninety days written notice.",
    "governing law",
    "Reducing dietary salt lowers blood pressure in patients with hypertension, in most trials we found.",
    "x",
    "高血压患者应当减少盐的摄入。",
)


def export_encoder(encoder: Any, out: str | Path, *, format: str = "onnx", int8: bool = False,
                   sides: tuple[str, ...] = SIDES, name: str = "encoder", overwrite: bool = False) -> Path:
    """Write ``encoder`` (a float32 torch :class:`DualEncoder`) to ``out`` as ``format``; return ``out``.

    ``format``: ``onnx`` (``model.onnx``, or ``query.onnx`` + ``document.onnx`` when the sides differ),
    ``torchscript`` (``.pt`` files likewise) or ``triton`` (a Triton model repository: ``{name}_query/`` and
    ``{name}_document/``, each ``config.pbtxt`` + ``1/model.onnx``). ``sides`` limits the export to one side
    (a query server needs only the query graph). ``int8`` is for onnx and triton.
    """
    import torch

    if format not in EXPORT_FORMATS:
        raise InvalidInputError(f"format={format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    if int8 and format == "torchscript":
        raise InvalidInputError("int8 export is ONNX only (ONNX Runtime dynamic quantization): use --format onnx or triton")
    unknown = sorted(set(sides) - set(SIDES))
    if unknown or not sides:
        raise InvalidInputError(f"sides={sides!r} must name 'query' and/or 'document'")
    if getattr(encoder.backend, "name", None) != "torch":
        raise InvalidInputError(f"{encoder.model_name} is already an export ({encoder.backend.name}); export its source "
                                "model (or the index it built) instead")
    if encoder.backend.dtype != torch.float32:
        raise InvalidInputError(f"export from a float32 encoder (this one runs {encoder.backend.dtype}): "
                                "load it with dtype='float32'")
    out = Path(out)
    _check_target(out, overwrite)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        manifest = _write_graphs(encoder, staging, format, int8, tuple(s for s in SIDES if s in sides), name)
        encoder.tokenizer.save_pretrained(staging)
        manifest.write(staging)
        manifest.probe_cosine_min = probe_cosine(encoder, staging, manifest)
        manifest.write(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s (%s, %s) to %s", encoder.model_name, format, manifest.precision, out)
    return out


def source_encoder(source: str | Path | None, *, adapter: str | None = None) -> Any:
    """The float32 CPU torch encoder to export from ``source``: an index directory (the encoder its record names,
    adapter included), a transformers / sentence-transformers model folder (plus ``adapter``), or None (bundled)."""
    from ..storage.layout import detect_format
    from .dual_encoder import DualEncoder

    run = {"dtype": "float32", "device": "cpu", "backend": "torch"}
    if source is None:
        return DualEncoder(adapter=adapter, **run)
    folder = Path(source)
    if not folder.is_dir():
        raise InvalidInputError(f"{source} is not a folder: give an index directory or a model folder to export")
    if is_export_folder(folder):
        raise InvalidInputError(f"{source} is already an exported encoder; export the model (or index) it came from")
    if detect_format(folder) is not None:
        if adapter:
            raise InvalidInputError(f"{source} is an index: it names its own adapter; drop --adapter")
        from ..document_index import DocumentIndex

        index = DocumentIndex.load(folder, writable=False, encoder_overrides=run)
        return index.encoder
    if not (folder / "config.json").is_file():
        raise InvalidInputError(
            f"{source} is neither an index directory (no CURRENT or manifest.json) nor a transformers model folder "
            "(no config.json); give one of those"
        )
    return DualEncoder(model=str(folder), adapter=adapter, **run)


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise InvalidInputError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
    if not is_export_folder(out):
        raise InvalidInputError(f"{out} is not an exported encoder ({EXPORT_MANIFEST_NAME} is missing); "
                                "refusing to overwrite it: choose another --out")


def side_module(model: Any, projection: Any, pooling: str, input_names: list[str]) -> Any:
    """The ``torch.nn.Module`` one side's graph is traced from: transformer → pool → project → normalise."""
    import torch

    from .torch_backend import pool

    class SideEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.projection = projection

        def forward(self, *inputs: Any) -> Any:
            features = dict(zip(input_names, inputs))
            hidden = self.model(**features).last_hidden_state
            pooled = pool(hidden, features["attention_mask"], pooling)
            if self.projection is not None:
                pooled = self.projection(pooled)
            return torch.nn.functional.normalize(pooled.float(), dim=-1)

    return SideEncoder().eval()


def _write_graphs(encoder: Any, folder: Path, format: str, int8: bool, sides: tuple[str, ...], name: str) -> ExportManifest:
    from .. import __version__

    backend = encoder.backend
    input_names = [n for n in INPUT_NAMES if n in encoder.tokenizer.model_input_names]
    shared = not backend.side_models  # no side has its own merged copy: one graph serves both
    suffix = ".pt" if format == "torchscript" else ".onnx"
    graphs: dict[str, str] = {}
    written: dict[str, str] = {}
    sample = encoder.tokenizer(["a short text", "a somewhat longer text to trace the graph with"], padding=True,
                               return_tensors="pt")
    args = tuple(sample[n] for n in input_names)
    for side in sides:
        key = "shared" if shared else side
        if format == "triton":
            graphs[side] = f"{name}_{side}/1/model.onnx"
        else:
            graphs[side] = f"model{suffix}" if shared else f"{side}{suffix}"
        target = folder / graphs[side]
        target.parent.mkdir(parents=True, exist_ok=True)
        if key in written:  # the other side's graph already; triton: each model directory holds its own copy
            if written[key] != graphs[side]:
                shutil.copyfile(folder / written[key], target)
            continue
        # A copy in eval mode: tracing and export can switch the traced module (and all below it) to training.
        model = copy.deepcopy(backend.model_for(side)).float().eval()
        projection = copy.deepcopy(backend.projection).float().eval() if backend.projection is not None else None
        module = side_module(model, projection, encoder.pooling, input_names)
        if format == "torchscript":
            _trace(module, args, target)
        else:
            _onnx(module, args, input_names, target, encoder.dim)
            if int8:
                quantize_int8(target)
        written[key] = graphs[side]
    manifest = ExportManifest(
        format="torchscript" if format == "torchscript" else "onnx", graphs=graphs, dim=encoder.dim,
        base_fingerprint=encoder.base_fingerprint, max_positions=backend.max_positions,
        max_seq_length=encoder.max_seq_length, pooling=encoder.pooling, precision="int8" if int8 else "float32",
        adapter_hashes=dict(encoder.adapter_hashes), query_prefix=encoder.query_prefix,
        document_prefix=encoder.document_prefix, input_names=input_names, output_name=OUTPUT_NAME,
        layout="triton" if format == "triton" else "folder", source_model=Path(encoder.model_name).name,
        library_version=__version__,
    )
    if format == "triton":
        from .triton import write_model_configs

        write_model_configs(folder, manifest, max_batch_size=encoder.config.batch_size)
    return manifest


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Hide the tracer's and the quantizer's warnings (TracerWarning on transformers' mask code, "consider
    pre-processing"): the probe after export checks what they warn about, on inputs of other shapes."""
    root = logging.getLogger()
    level = root.level
    if not logger.isEnabledFor(logging.INFO):
        root.setLevel(logging.ERROR)  # onnxruntime.quantization logs through the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _onnx(module: Any, args: tuple[Any, ...], input_names: list[str], target: Path, dim: int) -> None:
    import torch

    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("ONNX export needs onnx: pip install 'deepseek-rag[export]'") from exc
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    axes[OUTPUT_NAME] = {0: "batch"}
    with torch.no_grad(), quiet_tracing():
        torch.onnx.export(module, args, str(target), input_names=input_names, output_names=[OUTPUT_NAME],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    # The exporter leaves the vector width symbolic; declare it, so a reader (Triton, the backend's check)
    # sees (batch, dim) in the graph itself.
    graph = onnx.load(str(target))
    width = graph.graph.output[0].type.tensor_type.shape.dim[1]
    width.ClearField("dim_param")
    width.dim_value = dim
    onnx.save(graph, str(target))


def _trace(module: Any, args: tuple[Any, ...], target: Path) -> None:
    import torch

    with torch.no_grad(), quiet_tracing():
        traced = torch.jit.trace(module, args, check_trace=False)
    traced.save(str(target))


def quantize_int8(path: Path) -> None:
    """Quantize the weights of ``path`` to int8, per output channel, in place (activations: dynamic, per batch).

    Only MatMuls with a constant weight are quantized (ONNX Runtime leaves activation-by-activation products,
    the attention scores, in float); the result uses standard ONNX ops (DynamicQuantizeLinear, MatMulInteger),
    which ONNX Runtime fuses when it loads the graph.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingDependencyError("int8 export needs onnxruntime and onnx: pip install 'deepseek-rag[export]'") from exc
    plain = path.with_suffix(".float32.onnx")
    os.replace(path, plain)
    with quiet_tracing():
        quantize_dynamic(str(plain), str(path), weight_type=QuantType.QInt8, per_channel=True)
    plain.unlink()


def probe_cosine(encoder: Any, folder: Path, manifest: ExportManifest) -> float:
    """Lowest cosine between the export's vectors and ``encoder``'s on probe texts (batches of 1 and of 5).

    A float32 export below :data:`FLOAT32_PROBE_COSINE` is an error: the graph does not compute what the
    torch encoder computes (a shape fixed at trace time, a module left in training mode).
    """
    from .dual_encoder import DualEncoder

    exported = DualEncoder(model=str(folder), device="cpu")
    lowest = 1.0
    for side in manifest.graphs:
        for texts in (list(_PROBE_TEXTS), [_PROBE_TEXTS[0]]):
            ours = exported.encode_queries(texts) if side == "query" else exported.encode_documents(texts)
            theirs = encoder.encode_queries(texts) if side == "query" else encoder.encode_documents(texts)
            lowest = min(lowest, float(np.min(np.sum(ours * theirs, axis=1))))
    if manifest.precision == "float32" and lowest < FLOAT32_PROBE_COSINE:
        raise InvalidInputError(
            f"the {manifest.format} export of {encoder.model_name} does not reproduce the torch vectors "
            f"(lowest cosine {lowest:.6f} on probe texts, need {FLOAT32_PROBE_COSINE}); report this with the model"
        )
    logger.info("export probe: lowest cosine to torch %.6f", lowest)
    return round(lowest, 6)
