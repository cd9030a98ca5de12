"""``benchmarks/chat_overhead.py`` end to end on a tiny index: it starts the server, measures both routes, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deepseek_rag import Document, DocumentIndex
from deepseek_rag.encoding.dual_encoder import DualEncoder

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "chat_overhead.py"


def test_chat_overhead_reports_the_added_p50(tiny_model_dir, tmp_path):
    index = DocumentIndex(DualEncoder(model=str(tiny_model_dir)))
    index.add_documents([Document("lease.txt", "The tenant repairs the roof. The landlord pays for the boiler."),
                         Document("nda.txt", "The receiving party keeps the information confidential for two years.")])
    index.save(tmp_path / "index")
    out = tmp_path / "overhead.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "index"), "--requests", "6", "--warmup", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DEEPSEEK_API_KEY": "not-used: the script serves without an LLM"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "POST /v1/chat/completions" in done.stdout and "added latency" in done.stdout
    result = json.loads(out.read_text())
    assert result["requests"] == 6 and result["ask_p50_ms"] > 0 and result["chat_p50_ms"] > 0
    assert abs(result["added_of_p50s_ms"] - (result["chat_p50_ms"] - result["ask_p50_ms"])) < 1e-9

