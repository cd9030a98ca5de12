"""An upsert re-encodes only the chunks whose text changed; the others keep their stored vectors."""

from __future__ import annotations

import numpy as np
import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.ingest.chunking import ChunkingConfig

CLAUSES = " ".join(f"Clause {i}: the tenant pays rent of {i} euros and the landlord repairs roof {i}." for i in range(12))


class CountingEncoder(DualEncoder):
    """The tiny encoder, remembering every text it embeds on the document side."""

    encoded: list[str]

    def encode_documents(self, texts, *, batch_size=None, progress=None):  # noqa: D102
        self.encoded.extend(texts)
        return super().encode_documents(texts, batch_size=batch_size, progress=progress)


@pytest.mark.parametrize("spec", ["Flat", "IVF2,Flat"])
def test_only_edited_chunks_are_encoded_and_vectors_match_a_fresh_build(tiny_model_dir, tmp_path, spec):
    encoder = CountingEncoder(model=str(tiny_model_dir), dtype="float32")
    encoder.encoded = []
    chunking = ChunkingConfig(max_tokens=24, overlap=0)
    docs = [Document("lease", CLAUSES, {"title": "Lease"}), Document("nda", "Confidential for two years. " * 8)]
    index = DocumentIndex.build(docs, encoder, index_spec=spec, chunking=chunking)
    index.save(tmp_path / "idx")
    chunks = len(index.snapshot().chunks_of("lease"))
    assert chunks >= 4
    encoder.encoded.clear()

    edited = Document("lease", CLAUSES + " Clause 99: the tenant may keep a cat.", {"title": "Lease"})
    index.upsert_documents([edited])
    assert 1 <= len(encoder.encoded) <= 3 < chunks  # the re-cut end of the document, not all of it
    index.save()

    fresh = DocumentIndex.build([edited, docs[1]], DualEncoder(model=str(tiny_model_dir), dtype="float32"),
                                index_spec="Flat", chunking=chunking)
    query = encoder.encode_queries(["who repairs the roof?"])
    got = index.search_vectors(query, 5)
    want = fresh.search_vectors(query, 5)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)  # same scores: kept vectors are the texts' vectors

    encoder.encoded.clear()
    retitled = Document("lease", edited.text, {"title": "Lease of the farm"})  # the header is embedded: all change
    index.upsert_documents([retitled])
    assert len(encoder.encoded) == len(index.snapshot().chunks_of("lease"))


def test_a_store_that_cannot_return_vectors_encodes_everything(tiny_model_dir):
    encoder = CountingEncoder(model=str(tiny_model_dir), dtype="float32")
    encoder.encoded = []
    docs = [Document(f"d{i}", f"Document {i} about roofs and rent, item {i}. " * 3) for i in range(40)]
    index = DocumentIndex.build(docs, encoder, index_spec="IVF2,PQ4x4fs")  # fast-scan codes: no stored vectors
    encoder.encoded.clear()
    index.upsert_documents([docs[0]])
    assert len(encoder.encoded) == len(index.snapshot().chunks_of("d0"))
