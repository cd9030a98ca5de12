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


def test_the_cli_and_the_service_return_the_same_windows(index, tmp_path, tiny_model_dir):
    import json

    import httpx
    from click.testing import CliRunner
    from serve_helpers import running_server

    from deepseek_rag.cli import cli
    from deepseek_rag.serve import ServeSettings

    folder = tmp_path / "lease.idx"
    index.save(folder)
    expected = [(h.doc_id, h.start, h.end) for h in
                index.as_retriever(top_k=3, focus_documents=0, window_tokens=40).retrieve("landlord repairs roof")]
    result = CliRunner().invoke(cli, ["query", str(folder), "landlord repairs roof", "--top-k", "3", "--focus", "0",
                                      "--window-tokens", "40", "--json", "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert [(h["doc_id"], h["start"], h["end"]) for h in json.loads(result.output)["hits"]] == expected
    bad = CliRunner().invoke(cli, ["query", str(folder), "roof", "--window-tokens", "40", "--expand", "1"])
    assert bad.exit_code != 0 and "not both" in bad.output and "Traceback" not in bad.output

    with running_server(ServeSettings(index=str(folder), model=str(tiny_model_dir))) as url:
        body = {"query": "landlord repairs roof", "top_k": 3, "focus_documents": 0, "window_tokens": 40}
        hits = httpx.post(f"{url}/v1/retrieve", json=body, timeout=30).json()["hits"]
        assert [(h["doc_id"], h["start"], h["end"]) for h in hits] == expected
        for bad_body, field in (({**body, "window_tokens": 0}, "window_tokens"),
                                ({**body, "expand_neighbors": 1}, "not both")):
            response = httpx.post(f"{url}/v1/retrieve", json=bad_body, timeout=30)
            assert response.status_code == 422 and field in response.text, response.text
