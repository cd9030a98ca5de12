"""Fixtures for the LangChain adapter: a tiny random-init encoder and a small saved index.

``langchain-tests`` writes its async standard tests as bare ``async def`` methods and expects pytest-asyncio's
auto mode; ``pytest_pycollect_makeitem`` below marks exactly the coroutine tests of this folder, so they run
the same whether pytest starts here (auto mode) or from the repository root (strict mode).
"""

from __future__ import annotations

import inspect

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, EncoderConfig
from deepseek_rag.testing import build_tiny_model

TEXTS = {
    "contract.txt": (
        "This Agreement shall be governed by the laws of the State of New York. "
        "Either party may terminate this agreement on thirty days notice. Payment is due in thirty days. "
        "Either party may terminate the agreement for convenience, on notice in writing.",
        {"kind": "contract", "year": 2021},
    ),
    "clinic.txt": (
        "Patients with hypertension should reduce salt intake. Insulin resistance precedes type 2 diabetes. "
        "Patients with diabetes should reduce salt intake and watch insulin.",
        {"kind": "medical", "year": 2022},
    ),
    "story.txt": (
        "The quick brown fox jumps over the lazy dog. The lazy dog is not quick. "
        "The fox jumps over the dog again, and the quick brown fox is quick.",
        {"kind": "story", "year": 2021},
    ),
    "zh.txt": ("高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。本合同自双方签字之日起生效。", {"kind": "medical"}),
}


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector, name, obj):
    outcome = yield
    result = outcome.get_result()
    items = result if isinstance(result, list) else [result] if result is not None else []
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.asyncio)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir)))


@pytest.fixture(scope="session")
def core_documents() -> list[Document]:
    return [Document(doc_id, text, dict(meta)) for doc_id, (text, meta) in TEXTS.items()]


@pytest.fixture(scope="session")
def tiny_index_dir(tmp_path_factory, tiny_encoder, core_documents):
    """A saved index (contextual headers off: a chunk's own text is its exact query)."""
    folder = tmp_path_factory.mktemp("index") / "idx"
    DocumentIndex.build(core_documents, tiny_encoder, contextual_headers=False).save(folder)
    return folder
