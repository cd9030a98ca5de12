"""What thread safety costs the encoder: per-side adapters as merged models vs PEFT adapter switching, and a
tokenizer per thread — single-query latency and two-thread throughput, side by side in one run.

    python benchmarks/encoder_concurrency.py --queries 300

The adapter is a random LoRA adapter (r=4 on query/value) per side on the bundled all-MiniLM-L6-v2: what is
timed is the mechanism, not what the adapter learned. "switching" is the first release's way — one PEFT model
holding both adapters, ``set_adapter`` before each forward pass — made safe with a lock, which is what it
needs to be correct under concurrency; "merged" is this release's: one merged copy of the model per adapted
side, no switching, no lock.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from deepseek_rag import DualEncoder
from deepseek_rag.encoding.model_folder import default_model_path
from deepseek_rag.testing import build_tiny_adapter

QUERIES = ["who may terminate the agreement on notice?", "which law governs this contract?",
           "is the tenant responsible for roof repairs?", "when is payment due after the invoice?"]


class SwitchingBackend:
    """The first release's per-side adapters: one PEFT model, ``set_adapter`` per call, under a lock."""

    def __init__(self, merged_backend, adapter_dir: Path) -> None:
        from peft import PeftModel
        from transformers import AutoModel

        base = AutoModel.from_pretrained(default_model_path()).to(merged_backend.dtype).eval()
        model = PeftModel.from_pretrained(base, str(adapter_dir / "query"), adapter_name="query")
        model.load_adapter(str(adapter_dir / "document"), adapter_name="document")
        self.model, self.lock, self.inner = model.eval(), threading.Lock(), merged_backend

    def __getattr__(self, name):  # device, dim, fingerprints: those of the merged backend
        return getattr(self.inner, name)

    def forward(self, features, side):
        from deepseek_rag.encoding.torch_backend import pool

        tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in features.items()}
        with torch.inference_mode(), self.lock:
            self.model.set_adapter(side)
            hidden = self.model(**tensors).last_hidden_state
        return torch.nn.functional.normalize(pool(hidden, tensors["attention_mask"], "mean").float(), dim=-1).numpy()


def latency_ms(encoder: DualEncoder, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        encoder.encode_queries([QUERIES[i % len(QUERIES)]])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), float(np.percentile(times, 99))


def two_thread_qps(encoder: DualEncoder, seconds: float) -> float:
    stop, counts = time.perf_counter() + seconds, [0, 0]

    def run(slot: int) -> None:
        while time.perf_counter() < stop:
            (encoder.encode_queries if slot == 0 else encoder.encode_documents)([QUERIES[counts[slot] % 4]])
            counts[slot] += 1

    threads = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    adapter = build_tiny_adapter(default_model_path(), Path(tempfile.mkdtemp()) / "adapter")
    base = DualEncoder(dtype=args.dtype)
    merged = DualEncoder(adapter=str(adapter), dtype=args.dtype)
    switching = copy.copy(merged)
    switching.backend = SwitchingBackend(merged.backend, adapter)
    same = np.abs(switching.encode_queries(QUERIES) - merged.encode_queries(QUERIES)).max()
    started = time.perf_counter()
    for _ in range(5):
        copy.deepcopy(merged._tokenizer)
    copy_ms = (time.perf_counter() - started) / 5 * 1000
    print(f"per-side vectors, merged vs switching: max difference {same:.2e}")
    print(f"tokenizer copy for a new thread: {copy_ms:.1f} ms, once per thread")
    print(f"\n{'encoder':<34}{'query p50 ms':>13}{'p99 ms':>9}{'2 threads (q+d) /s':>20}")
    for label, encoder in (("no adapter", base), ("per-side adapters, merged (ours)", merged),
                           ("per-side adapters, switching+lock", switching)):
        latency_ms(encoder, 20)
        p50, p99 = latency_ms(encoder, args.queries)
        qps = two_thread_qps(encoder, args.seconds)
        print(f"{label:<34}{p50:>13.2f}{p99:>9.2f}{qps:>20.1f}", flush=True)


if __name__ == "__main__":
    main()
