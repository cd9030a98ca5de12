"""The README's LlamaIndex filter snippet (FilterOperator.LTE and a nested OR group) runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def snippet() -> str:
    section = README.read_text(encoding="utf-8").split("### Filters through LlamaIndex", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_llamaindex_filter_snippet_runs_and_every_node_passes_the_filter(capsys):
    code = snippet()
    assert "FilterOperator.LTE" in code and "FilterCondition.OR" in code
    exec(compile(code, "README", "exec"), {})
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"^\S+ \S+ \d+", line)]
    assert rows, "the snippet printed no nodes"
    for doc_id, brand, stock, price, _score in rows:
        assert float(price) <= 120 and (brand == "Ridgeline" or int(stock) >= 10), (doc_id, brand, stock, price)
    assert {"boot-1", "boot-3"} <= {row[0] for row in rows}  # Ridgeline at 119; Trailmate at 59.5 with 12 in stock
    assert not {"boot-2", "boot-4"} & {row[0] for row in rows}  # over 120; under it but another brand, 2 in stock
