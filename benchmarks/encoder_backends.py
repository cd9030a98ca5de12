"""How fast can this machine run the encoder? Every backend on the same chunk texts, side by side, one run.

    python benchmarks/encoder_backends.py ../shared/datasets/scifact --docs 600 \
        --compare bench-out/compare-scifact.json --json bench-out/encoder-backends.json

The texts are the chunks ``DocumentIndex`` cuts from the first ``--docs`` documents, contextual headers
included: exactly what a build encodes. Backends, all with the bundled all-MiniLM-L6-v2 weights:

* ``torch-fp32``: :class:`DualEncoder` as a build runs it (the reference);
* ``torch-bf16``: the same in bfloat16, only on a CPU with native bf16 (AVX512-BF16 / AMX) unless
  ``--bf16 always``: emulated bf16 is several times slower (see compare_llamaindex.py);
* ``torch-int8``: PyTorch dynamic quantization of every Linear layer, per-channel int8 weights;
* ``onnxruntime-fp32``: the encoder as ``deepseek-rag export --format onnx`` writes it, run by the ONNX backend
  (ONNX Runtime, every graph optimisation);
* ``onnxruntime-int8``: ``deepseek-rag export --int8``: dynamic per-channel int8 weights (``onnxruntime.quantization``);
* ``llamaindex-hf``: LlamaIndex's ``HuggingFaceEmbedding`` (what its default pipeline calls), same texts.

Ours run through ``DualEncoder.encode_documents`` (torch int8 with only the transformer swapped), so
tokenizing and length-sorted batching are the same for all. Rounds alternate between backends (``--rounds``, best round counts), so a busy machine favours none.
Reported: tokens/s (word pieces read, special tokens included), speed relative to ``torch-fp32``, and the
cosine of each text's vector to the ``torch-fp32`` one (min and mean). With ``--compare`` (the JSON of
compare_llamaindex.py) it also prints the encoder speed-up our build would need to reach 2x LlamaIndex's
documents/s while still reading every token of every document.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder
from deepseek_rag.encoding.dual_encoder import default_model_path
from deepseek_rag.ingest.loaders import load_beir_corpus


def chunk_texts(folder: str, docs: int, encoder: DualEncoder) -> list[str]:
    """What a default build embeds for the first ``docs`` documents: header + chunk text, per chunk."""
    index = DocumentIndex(encoder)  # default settings; nothing is encoded here
    return [index.embedding_text(chunk, document.title)
            for document in load_beir_corpus(folder)[:docs] for chunk in index.chunk(document)]


def with_model(encoder: DualEncoder, model) -> DualEncoder:
    """``encoder`` (tokenizer, batching, pooling) running ``model`` in place of its transformer."""
    variant = copy.copy(encoder)
    variant.backend = copy.copy(encoder.backend)
    variant.backend.model = model
    variant.backend.side_models = {}
    return variant


def torch_int8(encoder: DualEncoder) -> DualEncoder:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    linear = {torch.nn.Linear: per_channel_dynamic_qconfig}
    return with_model(encoder, quantize_dynamic(copy.deepcopy(encoder.backend.model), linear, dtype=torch.qint8))


def onnx_encoders(encoder: DualEncoder, workdir: Path) -> dict[str, DualEncoder]:
    """The encoder exported with ``deepseek-rag export`` (float32 and int8) and run by ONNX Runtime."""
    from deepseek_rag.encoding.export import export_encoder

    return {"onnxruntime-fp32": DualEncoder(model=str(export_encoder(encoder, workdir / "fp32"))),
            "onnxruntime-int8": DualEncoder(model=str(export_encoder(encoder, workdir / "int8", int8=True)))}


def llamaindex_run(texts: list[str]) -> Callable[[], np.ndarray]:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=default_model_path(), device="cpu")
    return lambda: np.asarray(embed.get_text_embedding_batch(texts), dtype=np.float32)


def needed_speedup(compare_json: str) -> dict[str, float]:
    """From compare_llamaindex.py's JSON: the encoder speed-up that would take our build to 2x LlamaIndex's docs/s."""
    rows = json.loads(Path(compare_json).read_text())["results"]
    ours, theirs = rows["ours-fp32"], rows["llamaindex-default"]
    return {"ours_docs_per_s": ours["docs_per_s"], "llamaindex_docs_per_s": theirs["docs_per_s"],
            "tokens_read_ratio": ours["embedded_tokens"] / theirs["embedded_tokens"],
            "speedup_for_2x_docs_per_s": 2 * theirs["docs_per_s"] / ours["docs_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="BEIR folder (corpus.jsonl)")
    parser.add_argument("--docs", type=int, default=600, help="Documents to chunk and encode.")
    parser.add_argument("--rounds", type=int, default=2, help="Timed rounds per backend (best counts).")
    parser.add_argument("--bf16", choices=("native", "always", "never"), default="native")
    parser.add_argument("--compare", default=None, help="compare_llamaindex.py JSON, for the speed-up a 2x build needs.")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    encoder = DualEncoder(dtype="float32")
    texts = chunk_texts(args.data, args.docs, encoder)
    prefixed = encoder._prefixed(texts, "document")
    tokens = sum(map(len, encoder.tokenizer(prefixed, truncation=True, max_length=encoder.max_seq_length)["input_ids"]))
    runs: dict[str, Callable[[], np.ndarray]] = {"torch-fp32": partial(encoder.encode_documents, texts)}
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if args.bf16 == "always" or (args.bf16 == "native" and native):
        bf16 = DualEncoder(dtype="bfloat16")
        runs["torch-bf16"] = partial(bf16.encode_documents, texts)
    variants = {"torch-int8": torch_int8(encoder)}
    with tempfile.TemporaryDirectory() as workdir:
        variants.update(onnx_encoders(encoder, Path(workdir)))
        for name, variant in variants.items():
            runs[name] = partial(variant.encode_documents, texts)
        runs["llamaindex-hf"] = llamaindex_run(texts)
        best: dict[str, float] = {}
        vectors: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                vectors[name] = run()
                best[name] = max(best.get(name, 0.0), tokens / (time.perf_counter() - started))
    reference = vectors["torch-fp32"]
    rows = {}
    for name in runs:
        cosine = (vectors[name] * reference).sum(axis=1)
        rows[name] = {"tokens": tokens, "tokens_per_s": best[name], "vs_torch_fp32": best[name] / best["torch-fp32"],
                      "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
    print(f"{len(texts)} chunk texts from {args.docs} documents; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, native bf16: {native}")
    print(f"{'backend':<18}{'tokens':>10}{'tokens/s':>10}{'vs fp32':>9}{'cos min':>9}{'cos mean':>10}")
    for name, row in rows.items():
        print(f"{name:<18}{row['tokens']:>10}{row['tokens_per_s']:>10.0f}{row['vs_torch_fp32']:>8.2f}x"
              f"{row['cosine_min']:>9.4f}{row['cosine_mean']:>10.5f}")
    result = {"texts": len(texts), "documents": args.docs, "native_bf16": native, "results": rows}
    if args.compare:
        need = needed_speedup(args.compare)
        fastest = max((r["vs_torch_fp32"], n) for n, r in rows.items() if n != "llamaindex-hf")
        print(f"\nbuild at 2x LlamaIndex's docs/s ({need['llamaindex_docs_per_s']:.1f} -> "
              f"{2 * need['llamaindex_docs_per_s']:.1f}; ours {need['ours_docs_per_s']:.1f}) needs the encoder "
              f"{need['speedup_for_2x_docs_per_s']:.2f}x faster; fastest backend here: {fastest[1]} at {fastest[0]:.2f}x")
        result["needed"] = need
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
