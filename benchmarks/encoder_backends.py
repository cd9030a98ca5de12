"""How fast can this machine run the encoder? Every backend on the same chunk texts, side by side, one run.

    python benchmarks/encoder_backends.py ../shared/datasets/scifact --docs 600 \
        --compare bench-out/compare-scifact.json --json bench-out/encoder-backends.json

The texts are the chunks ``DocumentIndex`` cuts from the first ``--docs`` documents, contextual headers
included: exactly what a build encodes. Backends, all with the bundled all-MiniLM-L6-v2 weights:

* ``torch-fp32``: :class:`DualEncoder` as a build runs it (the reference);
* ``torch-bf16``: the same in bfloat16, only on a CPU with native bf16 (AVX512-BF16 / AMX) unless
  ``--bf16 always``: emulated bf16 is several times slower (see compare_llamaindex.py);
* ``torch-int8``: PyTorch dynamic quantization of every Linear layer, per-channel int8 weights;
* ``onnxruntime-fp32``: the model exported to ONNX and run by ONNX Runtime with its graph optimisations;
* ``onnxruntime-int8``: that graph with dynamic per-channel int8 weights (``onnxruntime.quantization``);
* ``llamaindex-hf``: LlamaIndex's ``HuggingFaceEmbedding`` (what its default pipeline calls), same texts.

Every backend pads length-sorted batches the same way and pools like the model's sentence-transformers
config. Rounds alternate between backends (``--rounds``, best round counts), so a busy machine favours none.
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
from pathlib import Path

import numpy as np

from deepseek_rag import DocumentIndex, DualEncoder
from deepseek_rag.encoder import _pool, default_model_path
from deepseek_rag.loaders import load_beir_corpus

Forward = Callable[[dict[str, np.ndarray]], np.ndarray]  # padded features -> last hidden state


def chunk_texts(folder: str, docs: int, encoder: DualEncoder) -> list[str]:
    """What a default build embeds for the first ``docs`` documents: header + chunk text, per chunk."""
    index = DocumentIndex(encoder)  # default settings; nothing is encoded here
    return [index.embedding_text(chunk, document.title)
            for document in load_beir_corpus(folder)[:docs] for chunk in index.chunk(document)]


def encode(encoder: DualEncoder, forward: Forward, texts: list[str]) -> tuple[np.ndarray, int]:
    """Unit vectors for ``texts`` through ``forward``, batched as DualEncoder batches them; and tokens read."""
    import torch

    encoded = encoder.tokenizer(encoder._prefixed(texts, "document"), truncation=True, max_length=encoder.max_seq_length)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    for start, stop in encoder._batches(lengths[order], encoder.config.batch_size):
        idx = order[start:stop]
        features = encoder.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in encoded.keys()}, return_tensors="np")
        hidden = torch.from_numpy(np.asarray(forward(dict(features)), dtype=np.float32))
        pooled = _pool(hidden, torch.from_numpy(features["attention_mask"]), encoder.pooling)
        out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out, int(lengths.sum())


def torch_forward(model) -> Forward:
    import torch

    def forward(features):
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in features.items()}
            return model(**tensors).last_hidden_state.float().numpy()

    return forward


def torch_int8(encoder: DualEncoder) -> Forward:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = quantize_dynamic(copy.deepcopy(encoder.model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    return torch_forward(model)


def onnx_sessions(encoder: DualEncoder, workdir: Path) -> dict[str, Forward]:
    """ONNX Runtime fp32 and dynamic int8 (per-channel) sessions for the encoder's transformer."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoder.tokenizer.model_input_names]

    class LastHidden(torch.nn.Module):
        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    sample = encoder.tokenizer(["a short text", "another one"], padding=True, return_tensors="pt")
    exported, optimized, quantized = (workdir / f"{n}.onnx" for n in ("model", "optimized", "int8"))
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    # A copy, in eval mode: export restores the wrapper's train/eval mode on everything below it.
    torch.onnx.export(LastHidden(copy.deepcopy(encoder.model).float()).eval(), tuple(sample[n] for n in names), str(exported), input_names=names,
                      output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    config = encoder.model.config
    optimize_model(str(exported), model_type="bert", num_heads=config.num_attention_heads,
                   hidden_size=config.hidden_size).save_model_to_file(str(optimized))
    quantize_dynamic(str(optimized), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": 1})  # float, for outputs of ORT's fused ops

    def session(path: Path) -> Forward:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        runner = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda features: runner.run(None, {n: features[n].astype(np.int64) for n in names})[0]

    return {"onnxruntime-fp32": session(optimized), "onnxruntime-int8": session(quantized)}


def llamaindex_run(texts: list[str]) -> Callable[[], tuple[np.ndarray, int]]:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed = HuggingFaceEmbedding(model_name=default_model_path(), device="cpu")
    tokenizer = embed._model.tokenizer
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=embed._model.max_seq_length)["input_ids"])
    return lambda: (np.asarray(embed.get_text_embedding_batch(texts), dtype=np.float32), tokens)


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
    runs: dict[str, Callable[[], tuple[np.ndarray, int]]] = {}
    runs["torch-fp32"] = lambda: encode(encoder, torch_forward(encoder.model), texts)
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if args.bf16 == "always" or (args.bf16 == "native" and native):
        bf16 = DualEncoder(dtype="bfloat16")
        runs["torch-bf16"] = lambda: encode(bf16, torch_forward(bf16.model), texts)
    runs["torch-int8"] = (lambda forward: lambda: encode(encoder, forward, texts))(torch_int8(encoder))
    with tempfile.TemporaryDirectory() as workdir:
        for name, forward in onnx_sessions(encoder, Path(workdir)).items():
            runs[name] = (lambda f: lambda: encode(encoder, f, texts))(forward)
        runs["llamaindex-hf"] = llamaindex_run(texts)
        best: dict[str, float] = {}
        vectors: dict[str, np.ndarray] = {}
        tokens: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                vectors[name], tokens[name] = run()
                best[name] = max(best.get(name, 0.0), tokens[name] / (time.perf_counter() - started))
    reference = vectors["torch-fp32"]
    rows = {}
    for name in runs:
        cosine = (vectors[name] * reference).sum(axis=1)
        rows[name] = {"tokens": tokens[name], "tokens_per_s": best[name], "vs_torch_fp32": best[name] / best["torch-fp32"],
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
