"""Chinese analysis with jieba user dictionaries and chars+search, on legal text of our own: a field's words are
kept whole, an index records which dictionary cut its postings, and a changed or missing dictionary is refused."""

from __future__ import annotations

import pytest

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexFormatError, InvalidInputError, SparseConfig
from deepseek_rag.sparse.analysis import Analyzer, segment_chinese
from deepseek_rag.sparse.dictionary import dictionary_checksum

LAWS = [
    Document("defence", "应当先履行债务的当事人，有确切证据证明对方经营状况严重恶化的，可以行使不安抗辩权，中止履行。"),
    Document("agency", "行为人没有代理权，相对人有理由相信行为人有代理权的，构成表见代理，代理行为有效。"),
    Document("lease", "承租人未经出租人同意转租的，出租人可以解除合同。租赁期限不得超过二十年。"),
]


@pytest.fixture
def legal_terms(tmp_path):
    path = tmp_path / "legal_terms.txt"
    path.write_text("不安抗辩权\n表见代理 20 n\n\n", encoding="utf-8")
    return path


def test_a_user_dictionary_keeps_a_fields_words_whole(legal_terms):
    assert "不安抗辩权" not in segment_chinese("行使不安抗辩权", "search")
    assert "不安抗辩权" in segment_chinese("行使不安抗辩权", "search", str(legal_terms))
    assert "不安抗辩权" in segment_chinese("行使不安抗辩权", "precise", str(legal_terms))
    # jieba's global tokenizer is left alone: other indexes in the process are not affected
    assert "不安抗辩权" not in segment_chinese("行使不安抗辩权", "search")


def test_chars_plus_search_gives_the_character_ngrams_and_the_words():
    assert segment_chinese("高血压", "chars+search") == segment_chinese("高血压", "chars") + segment_chinese("高血压", "search")
    terms = Analyzer("zh", chinese="chars+search")("承租人的转租")
    assert {"承", "租", "承租", "租人", "承租人", "转租"} <= set(terms) and "的" not in terms


def test_the_checksum_follows_the_words_not_the_file(legal_terms, tmp_path):
    same = tmp_path / "copy.txt"
    same.write_text("  不安抗辩权\n\n表见代理 20 n\n", encoding="utf-8")
    assert dictionary_checksum(legal_terms) == dictionary_checksum(same)
    same.write_text("不安抗辩权\n", encoding="utf-8")
    assert dictionary_checksum(legal_terms) != dictionary_checksum(same)


@pytest.mark.parametrize("config, message", [
    ({"chinese": "chars", "user_dictionary": "terms.txt"}, "does not use jieba"),
    ({"chinese": "search", "user_dictionary": " "}, "must be a file path"),
    ({"chinese": "words"}, "not one of"),
])
def test_bad_settings_name_the_problem(config, message):
    with pytest.raises(InvalidInputError, match=message):
        SparseConfig(**config).analyzer("zh")("文本")


def test_a_missing_or_unreadable_dictionary_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        SparseConfig(chinese="search", user_dictionary=str(tmp_path / "nope.txt")).analysis_key()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        segment_chinese("合同", "search", str(latin1))


def test_an_index_records_its_dictionary_and_refuses_postings_cut_with_other_words(tiny_model_dir, legal_terms, tmp_path):
    encoder = DualEncoder(model=str(tiny_model_dir))
    sparse = {"chinese": "chars+search", "user_dictionary": str(legal_terms)}
    index = DocumentIndex.build(LAWS, encoder, sparse=sparse, dense="off")
    index.save(tmp_path / "laws.idx")
    index.close()
    loaded = DocumentIndex.load(tmp_path / "laws.idx", encoder, writable=False)
    hits = loaded.as_retriever(top_k=1).retrieve_documents("不安抗辩权")
    assert [d.doc_id for d in hits] == ["defence"]
    loaded.close()
    legal_terms.write_text("不安抗辩权\n", encoding="utf-8")  # the words changed: the postings no longer match
    with pytest.raises(IndexFormatError, match="other settings"):
        DocumentIndex.load(tmp_path / "laws.idx", encoder, writable=False).search_sparse(["表见代理"], 1)
