from __future__ import annotations

import json

import pytest

from deepseek_rag.errors import InvalidInputError
from deepseek_rag_finetune.pairs import (
    TrainingPair, deduplicate, load_pairs, read_beir_pairs, split_dev, write_jsonl_pairs,
)


def test_jsonl_reads_single_and_list_negatives(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"query": "q1", "positive": "p1", "negative": "n1"}) + "\n\n"
        + json.dumps({"query": "q2", "positive": "p2", "negatives": ["n2", "n3"]}) + "\n"
        + json.dumps({"query": "q3", "positive": "p3"}) + "\n"
    )
    pairs = load_pairs(path)
    assert [p.negatives for p in pairs] == [["n1"], ["n2", "n3"], []]


def test_malformed_json_line_reports_its_number(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "a", "positive": "b"}\n{"query": "a", "positive": \n')
    with pytest.raises(InvalidInputError, match="line 2"):
        load_pairs(path)


@pytest.mark.parametrize("row", [{"query": "  ", "positive": "b"}, {"query": "a", "positive": ""}, {"query": "a"}])
def test_empty_or_missing_side_reports_line(tmp_path, row):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"query": "x", "positive": "y"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InvalidInputError, match="line 2"):
        load_pairs(path)


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('query,positive,negative\nq1,"p1, with comma",n1\nq2,p2,\n')
    tsv_path = tmp_path / "p.tsv"
    tsv_path.write_text("query\tpositive\nq1\tp1\n")
    csv_pairs = load_pairs(csv_path)
    assert csv_pairs[0] == TrainingPair("q1", "p1, with comma", ["n1"]) and csv_pairs[1].negatives == []
    assert load_pairs(tsv_path) == [TrainingPair("q1", "p1")]


def test_csv_empty_side_and_bad_header(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("query,positive\nq1,p1\nq2,\n")
    with pytest.raises(InvalidInputError, match="line 3"):
        load_pairs(bad)
    header = tmp_path / "header.csv"
    header.write_text("question,answer\na,b\n")
    with pytest.raises(InvalidInputError, match="header"):
        load_pairs(header)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=".jsonl, .csv or .tsv"):
        load_pairs(tmp_path / "p.txt")
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_pairs(tmp_path / "nope.jsonl")


def test_beir_pairs_use_title_and_text_of_judged_docs(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Title One", "text": "Body one."}) + "\n"
        + json.dumps({"_id": "d2", "title": "", "text": "Body two."}) + "\n"
    )
    (tmp_path / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "first?"}) + "\n" + json.dumps({"_id": "q2", "text": "second?"}) + "\n"
    )
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td2\t1\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\t1\n")
    pairs = read_beir_pairs(tmp_path)
    assert pairs == [TrainingPair("first?", "Title One Body one."), TrainingPair("second?", "Body two.")]
    assert read_beir_pairs(tmp_path, "test") == [TrainingPair("second?", "Title One Body one.")]


def test_deduplicate_merges_negatives():
    pairs = [TrainingPair("Q", "p", ["a"]), TrainingPair("q ", "p", ["b", "a"]), TrainingPair("q", "other")]
    assert deduplicate(pairs) == [TrainingPair("Q", "p", ["a", "b"]), TrainingPair("q", "other")]


def test_dev_split_is_deterministic_and_keeps_queries_together(pairs):
    doubled = pairs + [TrainingPair(p.query, p.positive + " (second positive)") for p in pairs]
    train, dev = split_dev(doubled, 0.3)
    assert (train, dev) == split_dev(list(doubled), 0.3)
    assert dev and train
    assert not {p.query for p in train} & {p.query for p in dev}
    assert split_dev(pairs, 0.0) == (pairs, [])


def test_write_then_load_round_trip(tmp_path, pairs):
    pairs[0].negatives = ["neg"]
    assert load_pairs(write_jsonl_pairs(pairs, tmp_path / "out.jsonl")) == pairs
