"""Fixtures for the LlamaIndex adapter: a tiny random-init encoder, a small corpus, an LLM that records prompts.

The tiny encoder's vectors mean nothing, so tests assert plumbing (ids, offsets, metadata, filters, what
reaches the prompt) or retrieve a chunk by querying with its exact text (identical text, identical vector:
the tiny model has no query or document prefix).
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback

from deepseek_rag import DualEncoder, EncoderConfig
from deepseek_rag.testing import build_tiny_model

CONTRACT = (
    "This Agreement shall be governed by the laws of the State of New York. "
    "Either party may terminate this agreement on thirty days notice. "
    "Payment is due in thirty days. The quick brown fox is not a party to this agreement. "
    "Either party may terminate the agreement for convenience. "
    "This Agreement shall be governed by the laws of New York and payment is due on notice. "
    "The parties agree that notice of termination is due in writing within thirty days."
)
CLINIC = (
    "Patients with hypertension should reduce salt intake. Insulin resistance precedes type 2 diabetes. "
    "Patients with diabetes should reduce salt intake and watch insulin. "
    "Hypertension precedes many conditions; patients should reduce intake of salt. "
    "Type 2 diabetes patients with insulin resistance should reduce salt. "
    "The early symptoms of diabetes include thirst; patients should watch salt and insulin. "
    "Patients with hypertension and diabetes are due for a check in thirty days."
)
STORY = (
    "The quick brown fox jumps over the lazy dog. The lazy dog is not quick. "
    "The fox jumps over the dog again, and the quick brown fox is quick. "
    "The dog and the fox are not parties to any agreement. "
    "Over the lazy dog the brown fox jumps, quick as ever, and the dog does not jump. "
    "In thirty days the fox jumps again; the lazy dog is still lazy and still not quick."
)
CHINESE = "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。本合同自双方签字之日起生效。" * 2

CORPUS = {
    "contract.txt": (CONTRACT, {"kind": "contract", "year": 2021}),
    "clinic.txt": (CLINIC, {"kind": "medical", "year": 2022}),
    "story.txt": (STORY, {"kind": "story", "year": 2021}),
    "zh.txt": (CHINESE, {"kind": "medical", "year": 2023, "lang": "zh"}),
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir)))


@pytest.fixture(scope="session")
def corpus_texts() -> dict[str, str]:
    return {doc_id: text for doc_id, (text, _) in CORPUS.items()}


def make_documents() -> list[Document]:
    return [Document(text=text, id_=doc_id, metadata=dict(meta)) for doc_id, (text, meta) in CORPUS.items()]


@pytest.fixture(scope="session")
def documents_factory():
    """Builds fresh LlamaIndex Documents (caller-chosen ids and metadata) for module-scoped fixtures."""
    return make_documents


@pytest.fixture
def documents() -> list[Document]:
    """LlamaIndex Documents with caller-chosen ids and metadata."""
    return make_documents()


class RecordingLLM(CustomLLM):
    """A fake completion LLM: records every prompt it gets and answers with ``reply`` (streamed word by word)."""

    prompts: list[str] = Field(default_factory=list)
    reply: str = "Either party may terminate on thirty days notice."

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=16_384, num_output=256, model_name="recording-llm")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text=self.reply)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        self.prompts.append(prompt)

        def words() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(self.reply.split(" ")):
                delta = word if i == 0 else " " + word
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return words()


@pytest.fixture
def recording_llm() -> RecordingLLM:
    return RecordingLLM()
