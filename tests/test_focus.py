"""Two-stage ranking for a query about one document: the rule (``focus.py``) and the retriever's ``"auto"``."""

from __future__ import annotations

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, InvalidInputError
from deepseek_rag.ingest.chunking import ChunkingConfig
from deepseek_rag.retrieval.focus import decide_focus, explicit_focus, names_document, question_part
from deepseek_rag.retrieval.retriever import Retriever


def test_names_document_matches_whole_title_phrases_only():
    assert names_document("Consider the ACME  Lease, between A and B; who pays?", "Acme lease")
    assert not names_document("the acmelease terms", "Acme lease")  # not a whole phrase
    assert not names_document("what is Q3 revenue", "Q3")  # too short to name anything
    assert not names_document("anything", None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # CUAD's form: party lists hold ';' — the question is what follows the last one
        ("Consider the Acme Lease between A; B and C; who repairs the roof?", "who repairs the roof?"),
        ("Who repairs the roof? Acme Lease", "Who repairs the roof?"),  # nothing after: what came before
        ("In the Acme Lease. Who repairs the roof?", "Who repairs the roof?"),
        ("what does the Acme Lease say about repairs", "what does the say about repairs"),  # one clause
    ],
)
def test_question_part_drops_the_words_that_name_the_document(query, expected):
    assert question_part(query, "Acme Lease") == expected


def test_question_part_is_none_when_the_query_does_not_name_the_document():
    assert question_part("who repairs the roof?", "Acme Lease") is None


def test_decide_focus_by_title_by_gap_or_not_at_all():
    ranking = [("lease", 0.9, "Acme Lease"), ("nda", 0.2, "Beta NDA")]
    titled = decide_focus("Acme Lease: who repairs the roof?", ranking)
    assert (titled.doc_ids, titled.question, titled.reason) == (("lease",), "who repairs the roof?", "title")
    plain = decide_focus("who repairs the roof?", ranking)
    assert not plain.focused and plain.question == "who repairs the roof?"
    gap = decide_focus("who repairs the roof?", ranking, min_gap=0.5)
    assert (gap.doc_ids, gap.reason) == (("lease",), "gap")
    assert not decide_focus("who repairs the roof?", ranking, min_gap=0.8).focused
    assert not decide_focus("anything", []).focused
    both = explicit_focus("Beta NDA; how long is the term?", ranking)
    assert (both.doc_ids, both.question, both.reason) == (("lease", "nda"), "how long is the term?", "explicit")


@pytest.fixture(scope="module")
def titled_index(tiny_model_dir):
    """Two long documents with titles that name themselves throughout, as contracts name their parties (many
    chunks each), and short abstracts that cannot fill an answer."""
    encoder = DualEncoder(model=str(tiny_model_dir))
    long_text = lambda name, words: " ".join(f"The {name} {w} clause {i}." for i in range(40) for w in words)  # noqa: E731
    docs = [
        Document("lease", long_text("Acme Lease", ["rent", "roof", "landlord"]), {"title": "Acme Lease"}),
        Document("nda", long_text("Beta NDA", ["secret", "term", "disclosure"]), {"title": "Beta NDA"}),
        Document("abstract-1", "Short abstract about the roof.", {"title": "Roof study"}),
        Document("abstract-2", "Short abstract about rent.", {"title": "Rent study"}),
    ]
    return DocumentIndex.build(docs, encoder, chunking=ChunkingConfig(max_tokens=24, overlap=4))


def test_auto_ranks_inside_the_document_the_query_names(titled_index):
    query = "Consider the Beta NDA between Acme and Beta; who pays the rent and repairs the roof?"
    plain = titled_index.as_retriever(top_k=8, focus_documents=0).retrieve(query)
    auto = titled_index.as_retriever(top_k=8)  # "auto" is the default
    assert auto.focus_documents == "auto"
    hits = auto.retrieve(query)
    assert len(hits) == 8 and {h.doc_id for h in hits} == {"nda"}  # the question's words point at the lease
    assert [h.chunk_id for h in plain] != [h.chunk_id for h in hits]  # the naming words no longer rank chunks
    (decision,) = auto.focus_decisions([query])
    assert (decision.doc_ids, decision.reason) == (("nda",), "title")
    assert decision.question == "who pays the rent and repairs the roof?"
    # the second stage ranks the nda's chunks with the question part, exactly as a filtered search would
    inside = titled_index.as_retriever(top_k=8, focus_documents=0).retrieve(decision.question,
                                                                            filters={"doc_id": "nda"})
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in inside]


def test_auto_keeps_the_plain_ranking_when_nothing_is_named_or_the_document_is_short(titled_index):
    for query in ("who repairs the roof?", "Roof study; short abstract about the roof"):
        plain = titled_index.as_retriever(top_k=8, focus_documents=0).retrieve_batch([query])
        auto = titled_index.as_retriever(top_k=8)
        assert [(h.chunk_id, h.score) for h in auto.retrieve_batch([query])[0]] == [(h.chunk_id, h.score) for h in plain[0]]
    short = auto.focus_decisions(["Roof study; short abstract about the roof"])[0]
    assert not short.focused and short.reason == "short"  # named, but one chunk cannot fill top_k=8


@pytest.mark.parametrize(
    ("mode", "query"),
    [
        ("hybrid", "Consider the Beta NDA between Acme and Beta; how long is the secret disclosure term?"),
        ("dense", "Consider the Beta NDA between Acme and Beta; who pays the rent and repairs the roof?"),
        ("sparse", "Consider the Beta NDA between Acme and Beta; how long is the secret disclosure term?"),
    ],
)
def test_auto_focus_in_every_mode(titled_index, mode, query):
    retriever = titled_index.as_retriever(top_k=5, mode=mode)
    hits = retriever.retrieve(query)
    assert len(hits) == 5 and {h.doc_id for h in hits} == {"nda"}
    assert retriever.focus_decisions([query])[0].reason == "title"


@pytest.mark.parametrize("bad", [-1, "often", 1.5, True])
def test_bad_focus_values_name_the_option(titled_index, bad):
    with pytest.raises(InvalidInputError, match="focus_documents"):
        titled_index.as_retriever(focus_documents=bad)
    with pytest.raises(InvalidInputError, match="focus_min_gap"):
        titled_index.as_retriever(focus_min_gap=2)


@pytest.fixture(scope="module")
def abstracts_index(tiny_model_dir):
    """Short titled documents only (a chunk or two each), as SciFact's abstracts: the rule can never focus."""
    encoder = DualEncoder(model=str(tiny_model_dir))
    words = ["roof", "rent", "landlord", "secret", "term", "boiler"]
    docs = [Document(f"abstract-{i}", f"Short abstract {i} about the {w}. " * (1 + i % 3), {"title": f"{w.title()} study"})
            for i, w in enumerate(words)]
    return DocumentIndex.build(docs, encoder, chunking=ChunkingConfig(max_tokens=24, overlap=4))


def _pairs(batches):
    return [[(h.chunk_id, h.score, h.text) for h in hits] for hits in batches]


@pytest.fixture
def rule_calls(monkeypatch):
    """How often the retriever ran the focus rule (``_focused_chunk_hits``)."""
    calls = []
    real = Retriever._focused_chunk_hits
    monkeypatch.setattr(Retriever, "_focused_chunk_hits", lambda self, *args, **kw: calls.append(args[3]) or real(self, *args, **kw))
    return calls


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_auto_on_short_documents_is_the_plain_ranking_without_running_the_rule(abstracts_index, mode, rule_calls,
                                                                              monkeypatch):
    snapshot = abstracts_index.snapshot()
    most = snapshot.most_chunks_per_document()
    assert most == max(len(snapshot.chunks_of(d)) for d in snapshot.document_ids()) > 1
    queries = ["Roof study; what about the roof?", "rent and the landlord", "Boiler study: short abstract"]
    k = most + 1
    plain = abstracts_index.as_retriever(top_k=k, mode=mode, focus_documents=0)
    auto = abstracts_index.as_retriever(top_k=k, mode=mode)
    vectors = None if mode == "sparse" else abstracts_index.encoder.encode_queries(queries)
    expected = _pairs(plain.retrieve_batch(queries))
    assert _pairs(auto.retrieve_batch(queries)) == expected
    if vectors is not None:
        assert _pairs(auto.search_by_vectors(vectors, k, queries=queries)) == expected
    assert rule_calls == []  # no document can hold k chunks: the rule is skipped, not run and overruled
    # ...and the rule run anyway (as before the bound) keeps the plain ranking too: the same hits in hybrid mode,
    # where both search the same depth; in one-side modes it searches deeper, so ties may break otherwise
    monkeypatch.setattr(Retriever, "_may_focus", lambda self, view, k: True)
    ruled = auto.retrieve_batch(queries)
    assert rule_calls == [k]
    if mode == "hybrid":
        assert _pairs(ruled) == expected
    assert [[round(h.score, 5) for h in hits] for hits in ruled] == [[round(s, 5) for _, s, _ in hits] for hits in expected]
    assert auto.focus_decisions(queries)[0].reason == "short"  # the diagnostic still runs the rule


def test_auto_runs_the_rule_when_a_document_can_fill_the_answer(abstracts_index, titled_index, rule_calls):
    most = abstracts_index.snapshot().most_chunks_per_document()
    abstracts_index.as_retriever(top_k=most).retrieve("Roof study; what about the roof?")
    assert rule_calls == [most]  # at the bound a document may fill the answer
    assert titled_index.snapshot().most_chunks_per_document() >= 8
    hits = titled_index.as_retriever(top_k=8).retrieve("Consider the Beta NDA between Acme and Beta; who pays the rent?")
    assert {h.doc_id for h in hits} == {"nda"} and len(rule_calls) == 2


def test_the_bound_follows_each_version_and_counts_deleted_chunks(tiny_model_dir, rule_calls):
    encoder = DualEncoder(model=str(tiny_model_dir))
    chunking = ChunkingConfig(max_tokens=24, overlap=4)
    index = DocumentIndex.build([Document("a", "Short abstract about the roof.", {"title": "Roof study"})], encoder,
                                chunking=chunking)
    assert index.snapshot().most_chunks_per_document() == 1
    long_text = " ".join(f"The Beta NDA secret term clause {i}." for i in range(60))
    index.add_documents([Document("nda", long_text, {"title": "Beta NDA"})])
    chunks = len(index.store.chunks_of("nda"))
    assert index.snapshot().most_chunks_per_document() == chunks >= 5
    hits = index.as_retriever(top_k=5).retrieve("Consider the Beta NDA; how long is the secret term?")
    assert {h.doc_id for h in hits} == {"nda"} and rule_calls == [5]
    index.delete_documents("nda")
    assert index.snapshot().most_chunks_per_document() == chunks  # an upper bound: deleted chunks still count
    assert [h.doc_id for h in index.as_retriever(top_k=5).retrieve("Beta NDA; secret term")] == ["a"]


def test_the_served_view_forwards_the_bound(abstracts_index, rule_calls):
    from deepseek_rag.serve.service import _Pinned, _TimedView

    stages = []
    snapshot = abstracts_index.snapshot()
    pinned = _Pinned(_TimedView(snapshot, lambda stage, seconds: stages.append(stage)), abstracts_index.encoder,
                     snapshot.has_sparse, snapshot.dense)
    k = snapshot.most_chunks_per_document() + 1
    served = Retriever(pinned, top_k=k).retrieve("Roof study; what about the roof?")
    plain = abstracts_index.as_retriever(top_k=k, focus_documents=0).retrieve("Roof study; what about the roof?")
    assert _pairs([served]) == _pairs([plain]) and rule_calls == [] and "search" in stages


def test_auto_skips_the_rule_for_queries_whose_candidates_hold_no_long_document(titled_index, monkeypatch):
    ranked = []
    real = Retriever._ranked_documents
    monkeypatch.setattr(Retriever, "_ranked_documents", lambda self, *args: ranked.append(args[0]) or real(self, *args))
    only_abstracts = {"doc_id": {"$in": ["abstract-1", "abstract-2"]}}
    query = "Roof study; short abstract about the roof"
    auto = titled_index.as_retriever(top_k=8)
    hits = auto.retrieve(query, filters=only_abstracts)
    assert ranked == []  # no candidate belongs to a document of 8 chunks or more: the rule is not run
    plain = titled_index.as_retriever(top_k=8, focus_documents=0).retrieve(query, filters=only_abstracts)
    assert _pairs([hits]) == _pairs([plain])
    assert not auto.focus_decisions([query], filters=only_abstracts)[0].focused and ranked == [query]  # diagnostics run it
    named = "Consider the Beta NDA between Acme and Beta; who pays the rent?"
    assert {h.doc_id for h in auto.retrieve(named)} == {"nda"} and ranked == [query, named]
