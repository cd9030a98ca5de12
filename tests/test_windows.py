"""Precise passages: small chunks matched, a bounded window of exact text returned (``window_tokens``)."""

from __future__ import annotations

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError
from deepseek_rag.ingest.chunking import ChunkingConfig


@pytest.fixture(scope="module")
def index(tiny_model_dir):
    encoder = DualEncoder(model=str(tiny_model_dir))
    text = " ".join(f"Clause {i}: the tenant pays rent of {i} euros and the landlord repairs roof {i}." for i in range(30))
    docs = [Document("lease", text, {"title": "Lease"}), Document("short", "The roof is repaired yearly.")]
    return DocumentIndex.build(docs, encoder, chunking=ChunkingConfig(max_tokens=16, overlap=0))


def _tokens(index, text):
    return len(index.encoder.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_windows_hold_the_matched_chunk_exact_text_and_bounded_size(index):
    plain = index.as_retriever(top_k=6, focus_documents=0).retrieve("landlord repairs roof")
    hits = index.as_retriever(top_k=6, focus_documents=0, window_tokens=40).retrieve("landlord repairs roof")
    assert len(hits) == 6
    for hit in hits:
        document = index.get_document(hit.doc_id).text
        assert document[hit.start : hit.end] == hit.text  # offsets stay exact
        assert hit.text == hit.text.strip() and _tokens(index, hit.text) <= 40
        assert hit.start == 0 or not (document[hit.start - 1].isalnum() and document[hit.start].isalnum())  # word start
    first = plain[0]
    assert hits[0].chunk_id == first.chunk_id and hits[0].start <= first.start and first.end <= hits[0].end
    assert _tokens(index, hits[0].text) > _tokens(index, first.text)  # grown with its neighbours' text


def test_windows_are_distinct_passages(index):
    """A chunk already inside a better hit's window is not returned again: k results are k passages."""
    hits = index.as_retriever(top_k=8, focus_documents=0, window_tokens=60).retrieve("tenant pays rent")
    assert len(hits) == 8
    for i, hit in enumerate(hits):
        for other in hits[:i]:
            assert not (other.doc_id == hit.doc_id and other.start <= hit.start and hit.end <= other.end)


def test_a_chunk_with_no_neighbours_comes_back_as_it_is(index):
    hits = index.as_retriever(top_k=1, focus_documents=0, window_tokens=64).retrieve_batch(
        ["The roof is repaired yearly."], filters={"doc_id": "short"})[0]
    assert [(h.start, h.end, h.text) for h in hits] == [(0, 28, "The roof is repaired yearly.")]


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, 10**6])
def test_bad_window_sizes_name_the_option(index, bad):
    with pytest.raises(InvalidInputError, match="window_tokens"):
        index.as_retriever(window_tokens=bad)


def test_windows_and_neighbour_expansion_do_not_mix(index):
    with pytest.raises(InvalidInputError, match="not both"):
        index.as_retriever(window_tokens=64, expand_neighbors=1)
