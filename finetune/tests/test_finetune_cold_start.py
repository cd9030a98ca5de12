from __future__ import annotations

import pytest

from deepseek_rag.documents import Document
from deepseek_rag.errors import InvalidInputError
from deepseek_rag_finetune.cold_start import llm_pairs, pseudo_pairs


def _doc():
    return Document(id="d1", text="Insulin resistance comes first in many adults. Then type 2 diabetes follows years later. "
                    "Diet and exercise lower the risk for most people.", metadata={"title": "Diabetes onset"})


def test_title_and_sentence_pairs():
    pairs = pseudo_pairs([_doc()], seed=0)
    assert pairs[0].query == "Diabetes onset" and "Insulin resistance" in pairs[0].positive
    sentence_pair = pairs[1]
    assert sentence_pair.query not in sentence_pair.positive  # the sentence is cut out of its passage
    assert pseudo_pairs([_doc()], seed=0) == pairs


def test_no_signal_is_an_error():
    with pytest.raises(InvalidInputError, match="no pseudo-pairs"):
        pseudo_pairs([Document(id="x", text="short")])


class FakeLLM:
    def __init__(self):
        self.prompts = []

    def complete(self, prompt):
        self.prompts.append(prompt)
        if "boom" in prompt:
            raise RuntimeError("rate limited")

        class Response:
            text = "Question: When does diabetes follow insulin resistance?\nextra line"

        return Response()


def test_llm_questions_with_a_fake_llm():
    llm = FakeLLM()
    pairs = llm_pairs(llm, ["passage one", "boom passage", "passage three"])
    assert [p.query for p in pairs] == ["When does diabetes follow insulin resistance?"] * 2
    assert [p.positive for p in pairs] == ["passage one", "passage three"]
    assert "passage one" in llm.prompts[0]


def test_llm_must_complete():
    with pytest.raises(InvalidInputError, match="complete"):
        llm_pairs(object(), ["x"])
