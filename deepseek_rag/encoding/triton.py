"""Triton Inference Server model configs for an export written as a model repository (``--format triton``).

The repository holds one model per side, ``{name}_query`` and ``{name}_document``, each ``config.pbtxt`` +
``1/model.onnx`` for Triton's ONNX Runtime backend, with dynamic batching on. Inputs and outputs are named and
typed as the graph declares them (read with ``onnx``); with ``max_batch_size > 0`` Triton's dims leave the
batch axis out, and a dynamic axis is ``-1``. The repository root also holds the tokenizer files and the
export manifest, which Triton ignores (it loads directories only) and ``DualEncoder(model=repo)`` reads: the
same folder serves from Triton or in-process. Tokenization stays with the client.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .export_folder import ExportManifest

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
QUEUE_DELAY_MICROSECONDS = 1000
# onnx.TensorProto element types → Triton data types
_TRITON_TYPES = {1: "TYPE_FP32", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                 16: "TYPE_BF16"}


def graph_signature(path: Path) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """(inputs, outputs) of an ONNX graph as (name, Triton data type, dims with -1 for dynamic axes, batch included)."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("Triton configs are read from the graph with onnx: pip install 'deepseek-rag[export]'") from exc
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(values: Any) -> list[tuple[str, str, list[int]]]:
        found = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            found.append((value.name, _TRITON_TYPES.get(tensor.elem_type, f"TYPE_UNKNOWN_{tensor.elem_type}"), dims))
        return found

    return describe(graph.input), describe(graph.output)


def model_config(name: str, graph: Path, *, max_batch_size: int, comment: str = "") -> str:
    """The ``config.pbtxt`` text of one model: ONNX Runtime backend, dynamic batching, the graph's tensors."""
    inputs, outputs = graph_signature(graph)

    def block(kind: str, tensors: list[tuple[str, str, list[int]]]) -> str:
        items = []
        for tensor_name, data_type, dims in tensors:
            dims = dims[1:]  # max_batch_size > 0: Triton adds the batch axis itself
            items.append(f'  {{\n    name: "{tensor_name}"\n    data_type: {data_type}\n'
                         f'    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}')
        return f"{kind} [\n" + ",\n".join(items) + "\n]\n"

    header = f"# {comment}\n" if comment else ""
    return (f'{header}name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
            + block("input", inputs) + block("output", outputs)
            + f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_MICROSECONDS}\n}}\n")


def write_model_configs(repository: Path, manifest: ExportManifest, *, max_batch_size: int = 64) -> list[Path]:
    """Write ``config.pbtxt`` beside each side's ``1/model.onnx`` in ``repository``; return the files written."""
    written = []
    for side, relative in manifest.graphs.items():
        graph = repository / relative
        model_dir = graph.parent.parent
        text = model_config(
            model_dir.name, graph, max_batch_size=max_batch_size,
            comment=f"deepseek-rag export: the {side} side of {manifest.source_model} ({manifest.precision}), "
                    "token ids in, unit vectors out",
        )
        (model_dir / CONFIG_NAME).write_text(text, encoding="utf-8")
        written.append(model_dir / CONFIG_NAME)
    return written
