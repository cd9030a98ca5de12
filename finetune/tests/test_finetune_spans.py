"""Span-labelled documents → training pairs: positives are the index's chunks that hold the answer, negatives
the same document's other chunks, held-out documents never train, bad rows are named."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex
from deepseek_rag.cli import cli
from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig
from deepseek_rag.errors import InvalidInputError
from deepseek_rag.evaluation import held_out
from deepseek_rag_finetune.mining import encoder_encode, rank_passages
from deepseek_rag_finetune.spans import read_span_labels, span_pairs
from finetune_toy import TOPICS


def _ids(want_held_out: bool, n: int) -> list[str]:
    return [i for i in (f"contract-{k}" for k in range(200)) if held_out(i) == want_held_out][:n]


def _contract(doc_id: str) -> tuple[str, list[tuple[str, int, int]]]:
    """A long contract: one clause per topic; question ``q-<id>-<topic>`` is answered by that clause."""
    text, spans = "", []
    for topic in TOPICS[:12]:
        clause = f"the {topic} team wrote about {topic} matters in the {topic} report."
        start = len(text) + len("Clause. ")
        text += f"Clause. {clause} Other words follow here about nothing much.\n\n"
        spans.append((f"q-{doc_id}-{topic}", start, start + len(clause)))
    return text, spans


def _write_folder(folder, doc_ids, *, bad_span_row: dict | None = None, empty_question: str | None = None):
    (folder / "qrels").mkdir(parents=True)
    corpus, queries, rows = [], [], []
    for doc_id in doc_ids:
        text, spans = _contract(doc_id)
        corpus.append({"_id": doc_id, "title": f"agreement {doc_id}", "text": text})
        for qid, start, end in spans:
            topic = qid.rsplit("-", 1)[1]
            question = "" if qid == empty_question else f"agreement {doc_id}; what about {topic}"
            queries.append({"_id": qid, "text": question})
            rows.append({"query-id": qid, "corpus-id": doc_id, "start": start, "end": end})
    if bad_span_row:
        rows.append(bad_span_row)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "test_spans.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir), dtype="float32", device="cpu"))


def test_positives_are_the_index_chunks_overlapping_the_span(tmp_path, encoder):
    folder = _write_folder(tmp_path / "data", _ids(False, 2))
    labels = read_span_labels(folder)
    pairs = span_pairs(labels, encoder)
    docs = [Document(d.id, d.text, {"title": d.title}) for d in labels.documents.values()]
    index = DocumentIndex.build(docs, encoder, index_spec="Flat")
    chunks = [c for batch in index.store.iter_chunks() for c in batch]
    assert len(chunks) > 2 * len(docs)  # long documents: several chunks each
    for qid, spans in labels.spans.items():
        expected = {index.embedding_text(c, labels.documents[c.doc_id].title) for c in chunks
                    if any(c.doc_id == d and c.start < e and c.end > s for d, s, e in spans)}
        got = {p.positive for p in pairs if p.query == labels.queries[qid]}
        assert got == expected and expected  # exactly the encoded units (header included) that hold the answer
        assert all(text.startswith(f"agreement {spans[0][0]}\n") for text in got)


@pytest.mark.parametrize("mining", ["bm25", "dense"])
def test_negatives_come_from_the_same_document_and_never_overlap_an_answer(tmp_path, encoder, mining):
    folder = _write_folder(tmp_path / "data", _ids(False, 2))
    labels = read_span_labels(folder)
    pairs = span_pairs(labels, encoder, negatives=3, mining=mining)
    index = DocumentIndex.build([Document(d.id, d.text, {"title": d.title}) for d in labels.documents.values()],
                                encoder, index_spec="Flat")
    chunks = [c for batch in index.store.iter_chunks() for c in batch]
    by_text = {index.embedding_text(c, labels.documents[c.doc_id].title): c for c in chunks}
    qid_of = {text: qid for qid, text in labels.queries.items()}
    ranking = {}
    for doc_id in labels.documents:  # each document's chunks ranked for its questions, once
        doc_chunks = [c for c in chunks if c.doc_id == doc_id]
        doc_texts = [index.embedding_text(c, labels.documents[doc_id].title) for c in doc_chunks]
        questions = [labels.queries[q] for q, s in labels.spans.items() if s[0][0] == doc_id]
        ranked = rank_passages(questions, doc_texts, method=mining, encode=encoder_encode(encoder))
        ranking.update({q: [(doc_chunks[i], doc_texts[i]) for i, _ in ranked[q]] for q in questions})
    for pair in pairs:
        answers = labels.spans[qid_of[pair.query]]
        assert len(pair.negatives) == 3
        for negative in pair.negatives:
            chunk = by_text[negative]
            assert chunk.doc_id == answers[0][0]
            assert not any(chunk.start < e and chunk.end > s for _, s, e in answers)
        # the hardest first: the mining method's best-ranked chunk of that document that holds no answer
        free = [text for c, text in ranking[pair.query] if not any(c.start < e and c.end > s for _, s, e in answers)]
        assert pair.negatives == free[:3]
    none = span_pairs(labels, encoder, negatives=0)
    assert [p.positive for p in none] == [p.positive for p in pairs] and not any(p.negatives for p in none)


def test_held_out_documents_never_appear_in_training_pairs(tmp_path, encoder):
    kept, left_out = _ids(False, 2), _ids(True, 2)
    labels = read_span_labels(_write_folder(tmp_path / "data", kept + left_out))
    train = labels.without_held_out()
    assert sorted(train.documents) == sorted(kept)
    pairs = span_pairs(train, encoder, negatives=2)
    texts = [t for p in pairs for t in (p.positive, *p.negatives)] + [p.query for p in pairs]
    assert pairs and not any(f"agreement {d}" in t for t in texts for d in left_out)
    assert all(any(f"agreement {d}" in p.positive for d in kept) for p in pairs)


def test_cli_trains_a_query_side_adapter_from_spans(tmp_path, tiny_model_dir):
    folder = _write_folder(tmp_path / "data", _ids(False, 3) + _ids(True, 1))
    out = tmp_path / "adapter"
    result = CliRunner().invoke(cli, ["finetune", "--spans", str(folder), "--out", str(out), "--model", str(tiny_model_dir),
                                      "--adapter-mode", "query", "--hard-negatives", "1", "--mining", "bm25",
                                      "--max-steps", "2", "--batch-size", "4", "--no-progress", "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert "from 36 questions on 3 documents (1 held-out documents left out)" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[0])["steps"] == 2
    assert (out / "deepseek_rag_adapter.json").is_file()


@pytest.mark.parametrize(("change", "message"), [
    ({"bad_span_row": {"query-id": "q-x", "corpus-id": "contract-0", "start": 10, "end": 99999}},
     "line 37: span [10, 99999) lies outside document 'contract-0'"),
    ({"bad_span_row": {"query-id": "q-x", "corpus-id": "nowhere", "start": 0, "end": 5}},
     "line 37: corpus-id 'nowhere' is not in corpus.jsonl"),
    ({"bad_span_row": {"query-id": "nobody", "corpus-id": "contract-0", "start": 0, "end": 5}},
     "line 37: query-id 'nobody' is not in queries.jsonl"),
    ({"bad_span_row": {"query-id": "q-x", "corpus-id": "contract-0", "start": "0", "end": 5}},
     "line 37: 'start' and 'end' must be integer character offsets"),
    ({"empty_question": "q-contract-0-bravo"}, "line 2: query 'q-contract-0-bravo' has an empty question (queries.jsonl line 2)"),
])
def test_bad_rows_are_named(tmp_path, tiny_model_dir, change, message):
    folder = _write_folder(tmp_path / "data", ["contract-0", "contract-1", "contract-2"], **change)
    if "bad_span_row" in change:
        with open(folder / "queries.jsonl", "a") as handle:
            handle.write(json.dumps({"_id": "q-x", "text": "what about x"}) + "\n")
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_span_labels(folder)
    result = CliRunner().invoke(cli, ["finetune", "--spans", str(folder), "--out", str(tmp_path / "o"),
                                      "--model", str(tiny_model_dir)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_missing_span_file_names_the_splits_there(tmp_path):
    folder = _write_folder(tmp_path / "data", ["contract-0"])
    with pytest.raises(InvalidInputError, match=r"train_spans.jsonl not found; span splits here: test \(pass --split test\)"):
        read_span_labels(folder, "train")
