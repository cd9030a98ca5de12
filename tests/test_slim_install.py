"""The slim serving install: ``pip install deepseek-rag[onnx]`` in a fresh venv, no torch, serves an export.

A fresh virtual environment (no system site-packages) gets the core and onnxruntime from the package index
(or the local wheel cache); then, in that environment, a script imports the package, builds and saves a small
index with an exported tiny model, queries it, and checks that torch is neither installed nor imported. The
size of its site-packages is printed (``pytest -s``) for the README. Slow (a minute or two): marked ``slow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import onnx  # noqa: F401  (the dev install has the export extra: the export below needs both)
import onnxruntime  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
NETWORK_TROUBLE = ("Could not find a version", "No matching distribution", "Failed to establish a new connection",
                   "Temporary failure in name resolution", "Network is unreachable")

SLIM_SCRIPT = r'''
import importlib.util, sys
from pathlib import Path

export, work = sys.argv[1], Path(sys.argv[2])
missing = [m for m in ("torch", "transformers", "peft", "sentence_transformers") if importlib.util.find_spec(m)]
assert not missing, f"the slim install has {missing}"
from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.errors import MissingDependencyError

try:
    DualEncoder()  # the bundled model comes with the torch extra
    raise AssertionError("the default encoder loaded without torch")
except MissingDependencyError as exc:
    assert "deepseek-rag[torch]" in str(exc), exc
encoder = DualEncoder(model=export)
docs = [Document(id="lease", text="The tenant may terminate the lease with ninety days written notice."),
        Document(id="pay", text="Payment is due in thirty days."),
        Document(id="law", text="This agreement is governed by the laws of New York.")]
DocumentIndex.build(docs, encoder).save(work / "slim.idx")
hits = DocumentIndex.load(work / "slim.idx", writable=False).as_retriever(top_k=3).retrieve("terminate the lease")
assert {h.doc_id for h in hits} == {"lease", "pay", "law"}, hits
heavy = [m for m in ("torch", "transformers", "peft", "sentence_transformers", "deepseek_rag_finetune") if m in sys.modules]
print("HEAVY", heavy, "backend", encoder.backend.name)
'''


def _site_packages_bytes(venv: Path) -> int:
    found = next(venv.glob("lib/python*/site-packages"))
    return sum(p.stat().st_size for p in found.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
def test_the_onnx_extra_serves_an_export_without_torch(tiny_model_dir, tmp_path):
    from deepseek_rag import DualEncoder
    from deepseek_rag.encoding.export import export_encoder

    export = export_encoder(DualEncoder(model=str(tiny_model_dir), dtype="float32", device="cpu"), tmp_path / "export")
    source = tmp_path / "src"  # a copy: building from the work tree would write build/ and egg-info into it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "deepseek_rag", source / "deepseek_rag", ignore=shutil.ignore_patterns("__pycache__"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{source}[onnx]"],
                               capture_output=True, text=True, timeout=1200, env=env)
    if installed.returncode != 0 and any(s in installed.stderr for s in NETWORK_TROUBLE):
        pytest.fail(f"the slim install needs the package index or pip's wheel cache, and neither answered: "
                    f"{installed.stderr.strip().splitlines()[-1]}")
    assert installed.returncode == 0, installed.stderr[-3000:]

    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "slim_check.py"
    script.write_text(SLIM_SCRIPT)
    done = subprocess.run([str(python), str(script), str(export), str(work)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY [] backend onnx" in done.stdout, done.stdout
    query = subprocess.run([str(venv / "bin" / "deepseek-rag"), "query", str(work / "slim.idx"), "payment due",
                            "--top-k", "1"], capture_output=True, text=True, timeout=300, env=env, cwd=work)
    assert query.returncode == 0 and "pay" in query.stdout, query.stderr[-3000:]
    print(f"\nslim install (deepseek-rag[onnx]) site-packages: {_site_packages_bytes(venv) / 2**20:.0f} MiB")
    assert _site_packages_bytes(venv) < 600 * 2**20  # torch alone is ~750 MiB
