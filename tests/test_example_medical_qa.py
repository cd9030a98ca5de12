"""examples/medical_qa_chinese.py runs offline with the bundled model and ranks the right answer first."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "medical_qa_chinese.py"


def test_medical_qa_example_finds_each_answer(capsys):
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    blocks = capsys.readouterr().out.split("Q: ")[1:]
    first_hits = [block.splitlines()[1].split()[1] for block in blocks]
    assert first_hits == ["hypertension-diet", "hypertension-codonopsis", "diabetes-symptoms", "cold-fever"]
