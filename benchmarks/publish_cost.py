"""What publishing a small change to a large index costs: a 100-document upsert into a 1M-chunk index.

    python benchmarks/publish_cost.py --like bench-out/scifact-flat --chunks 1000000 --out bench-out/publish

The index is built through ``DocumentIndex`` like any other — chunked, analysed for BM25, stored, published —
except that the vectors are **synthetic**: drawn as ``benchmarks/scale.py`` draws them, from a Gaussian mixture
fitted to the real MiniLM vectors of a Flat index of SciFact (``--like``), instead of running the encoder over
a million texts. Each document is one chunk of synthetic contract-like text. Then 100 of its documents are
upserted (new text, new vectors) and the index saved: the figures are the wall time of ``save()`` (the publish)
and the bytes it wrote, next to the index's own size — the first release's save rewrote the whole vectors
file every time. The same is done for 100 deletions, and for an upsert that also triggers a segment merge.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from scale import TiedGaussianMixture, real_vectors  # noqa: E402

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexSettings  # noqa: E402
from deepseek_rag.vectors.specs import resolve_auto_spec  # noqa: E402
from deepseek_rag.storage.layout import directory_bytes  # noqa: E402

WORDS = ("tenant landlord lease premises rent payment notice terminate agreement party breach cure period "
         "insurance indemnify liability warranty repair roof maintenance assignment sublet default remedy "
         "governing law court arbitration confidential information term renewal fee invoice interest").split()


class SyntheticVectors(DualEncoder):
    """The bundled encoder's tokenizer and fingerprint, with document vectors drawn from a fitted mixture."""

    def __init__(self, mixture: TiedGaussianMixture, seed: int) -> None:
        super().__init__()
        self._mixture, self._seed = mixture, seed

    def encode_documents(self, texts, *, batch_size=None, progress=None):  # noqa: D102 - see the class docstring
        self._seed += 1
        return self._mixture.sample(len(texts), self._seed)


def synthetic_documents(start: int, count: int, rng: np.random.Generator, tag: str = "") -> list[Document]:
    lengths = rng.integers(20, 60, count)
    picks = rng.integers(0, len(WORDS), int(lengths.sum()))
    out, at = [], 0
    for i, n in enumerate(lengths):
        text = " ".join(WORDS[w] for w in picks[at : at + n]) + f" clause {start + i}{tag}."
        at += n
        out.append(Document(f"doc-{start + i}", text.capitalize(), {"n": start + i, "language": "en"}))
    return out


def files_written(folder: Path, before: dict[str, int]) -> int:
    """Bytes of files that are new or changed since ``before`` (path → size, mtime-insensitive)."""
    now = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    return sum(size for name, size in now.items() if before.get(name) != size or name in ("CURRENT", "manifest.json"))


def snapshot_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", required=True, help="A Flat index of SciFact (its vectors are fitted).")
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--spec", default="auto", help="Vector index spec (auto: what 'auto' picks at --chunks).")
    parser.add_argument("--out", default="bench-out/publish")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    mixture = TiedGaussianMixture(real_vectors(args.like))
    encoder = SyntheticVectors(mixture, seed=1)
    spec = resolve_auto_spec(args.chunks, encoder.dim) if args.spec == "auto" else args.spec
    index = DocumentIndex(encoder, IndexSettings(index_spec=spec), lock_timeout=30)
    started = time.perf_counter()
    for start in range(0, args.chunks, 250_000):
        index.add_documents(synthetic_documents(start, min(250_000, args.chunks - start), rng))
        print(f"  built {start + min(250_000, args.chunks - start):,} documents in {time.perf_counter() - started:.0f}s",
              flush=True)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    index.save(out / "index")
    first_save_s = time.perf_counter() - started
    folder = out / "index"
    total = directory_bytes(folder)
    info = index.info()
    print(f"{info['chunks']:,} chunks, spec {info['index_spec']}: built in {build_s:.0f}s, first publish {first_save_s:.0f}s, "
          f"{total / 1e6:,.0f} MB on disk ({info['index_bytes'] / 1e6:,.0f} MB vectors)")
    rows = []

    def measure(label: str, change) -> None:
        before = snapshot_files(folder)
        change()
        started = time.perf_counter()
        index.save()
        seconds = time.perf_counter() - started
        written = files_written(folder, before)
        rows.append({"change": label, "publish_s": round(seconds, 3), "bytes_written": written,
                     "share_of_index": round(written / total, 5), "version": index.snapshot().version,
                     "segments": len(index.snapshot().states)})
        print(f"{label:<38} publish {seconds:6.2f}s  wrote {written / 1e6:8.2f} MB = {100 * written / total:6.3f}% "
              f"of the index  (version {rows[-1]['version']}, {rows[-1]['segments']} segments)", flush=True)

    ids = rng.choice(args.chunks, 100, replace=False)
    measure("upsert 100 documents", lambda: index.upsert_documents(
        [Document(f"doc-{i}", f"Revised clause {i}: the tenant repairs the roof.", {"n": int(i), "language": "en"}) for i in ids]))
    measure("add 100 new documents", lambda: index.add_documents(synthetic_documents(args.chunks, 100, rng)))
    measure("delete 100 documents", lambda: index.delete_documents([f"doc-{i}" for i in rng.choice(args.chunks, 100, replace=False)],
                                                                   missing_ok=True))
    for k in range(8):  # small publishes pile up until the lowest tier holds merge_factor segments and merges
        measure(f"upsert 100 documents (#{k + 2})", lambda: index.upsert_documents(
            synthetic_documents(int(rng.integers(0, args.chunks - 100)), 100, rng, " (again)")))
    reread = DocumentIndex.load(folder, encoder, writable=False)
    assert len(reread.vectors) == reread.store.counts()[1]
    print(f"reopened version {reread.version}: {reread.store.counts()[1]:,} chunks, all with their vectors")
    results = {"chunks": info["chunks"], "spec": info["index_spec"], "build_s": round(build_s, 1),
               "first_publish_s": round(first_save_s, 1), "index_bytes_on_disk": total,
               "vectors_file_bytes": info["index_bytes"], "publishes": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
