"""BERT (WordPiece) and XLM-R / e5 style (Unigram) encoders from a local folder, on Chinese text.

Each model's tokenizer is trained here on Chinese (and some English) text; the checks are the ones a user
relies on: chunks point at the right characters, end on Chinese sentence ends, fit the model with its
prefix, and the index built with the model searches in every mode.
"""

from __future__ import annotations

import re

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.ingest.chunking import ChunkingConfig, chunk_document
from deepseek_rag.testing import build_tiny_model

SENTENCES = [
    "高血压患者应当减少盐的摄入。",
    "糖尿病的早期症状包括多饮多尿！",
    "本合同自双方签字之日起生效；",
    "如何治疗慢性胃炎？",
    "感冒发烧要多喝水。",
    "长期失眠应当及时就医！",
]
TRAINING_TEXTS = SENTENCES + ["Patients with hypertension should reduce salt intake.", "query: passage: 高血壓"]
TEXT = "".join(SENTENCES * 3)
E5_PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module", params=["wordpiece", "unigram"])
def encoder(request, tmp_path_factory):
    folder = build_tiny_model(
        tmp_path_factory.mktemp(request.param), TRAINING_TEXTS, tokenizer=request.param, prompts=E5_PROMPTS,
        vocab_size=300,
    )
    return DualEncoder(model=str(folder))


def test_the_models_own_tokenizer_and_prefixes_are_used(encoder):
    name = type(encoder.tokenizer).__name__
    assert ("XLMRoberta" in name) == ("XLMRoberta" in type(encoder.backend.model).__name__)
    assert encoder.query_prefix == "query: " and encoder.document_prefix == "passage: "
    assert encoder.document_prefix_tokens > 0
    assert encoder.encode_queries(["高血压怎么办", "rent"]).shape == (2, encoder.dim)


def test_chunks_land_on_the_right_characters_and_end_on_sentence_ends(encoder):
    document = Document("zh", TEXT)
    chunks = chunk_document(document, encoder.tokenizer, ChunkingConfig(max_tokens=40, overlap=0))
    assert len(chunks) > 1
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert re.search("[。！？；]$", chunk.text), chunk.text
    assert chunks[0].start == 0 and chunks[-1].end == len(TEXT)
    assert all(b.start <= a.end for a, b in zip(chunks, chunks[1:]))  # nothing skipped


def test_index_with_the_model_fits_and_searches(encoder, tmp_path):
    docs = [Document("a", TEXT, {"title": "内科"}), Document("b", "Patients with hypertension should reduce salt intake.")]
    index = DocumentIndex.build(docs, encoder, chunking=ChunkingConfig(max_tokens=40, overlap=8))
    for batch in index.store.iter_chunks():
        for chunk in batch:
            embedded = encoder.document_prefix + index.embedding_text(chunk, chunk.metadata.get("title"))
            assert len(encoder.tokenizer(embedded)["input_ids"]) <= encoder.max_seq_length
    index.save(tmp_path / "idx")
    loaded = DocumentIndex.load(tmp_path / "idx")  # the model folder and its prefixes come back from the manifest
    for mode in ("dense", "sparse", "hybrid"):
        hits = loaded.as_retriever(top_k=3, mode=mode).retrieve("慢性胃炎怎么治疗")
        assert hits and all(loaded.get_document(h.doc_id).text[h.start : h.end] == h.text for h in hits)
    assert loaded.as_retriever(top_k=1, mode="sparse").retrieve("慢性胃炎")[0].doc_id == "a"
