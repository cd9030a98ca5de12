"""Loading files, folders, BEIR corpora and records into documents; bad files are skipped with a reason."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from deepseek_rag.documents import Document
from deepseek_rag.errors import InvalidInputError
from deepseek_rag.ingest.decoding import decode_text
from deepseek_rag.ingest.loaders import (
    decode_bytes,
    documents_from_records,
    load_beir_corpus,
    load_documents,
    load_documents_with_report,
)

CHINESE = "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。"


def write_pdf(path, pages):
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page.replace_contents(stream)
    writer.write(path)


def test_directory_ids_are_relative_paths_and_metadata_names_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Beta\n\nBody.", encoding="utf-8")
    docs = load_documents(tmp_path)
    assert [d.id for d in docs] == ["a.txt", "sub/b.md"]
    assert docs[1].text == "# Beta\n\nBody."
    assert docs[1].metadata == {"source": str(tmp_path / "sub" / "b.md"), "title": "b", "file_type": ".md"}
    assert docs[1].title == "b"


def test_non_recursive_skips_subfolders_and_hidden_files_are_ignored(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "a.rst").write_text("Alpha.", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("Beta.", encoding="utf-8")
    (tmp_path / ".git" / "c.txt").write_text("Hidden.", encoding="utf-8")
    assert [d.id for d in load_documents(tmp_path, recursive=False)] == ["a.rst"]
    report = load_documents_with_report(tmp_path)
    assert [d.id for d in report.documents] == ["a.rst", "sub/b.txt"]
    assert report.skipped == []


def test_file_given_directly_uses_its_name_as_id(tmp_path):
    path = tmp_path / "notes.markdown"
    path.write_text("Some notes.", encoding="utf-8")
    (doc,) = load_documents([str(path)])
    assert doc.id == "notes.markdown"
    assert doc.metadata["file_type"] == ".markdown"


def test_gb18030_file_loads_as_chinese(tmp_path):
    (tmp_path / "zh.txt").write_bytes(CHINESE.encode("gb18030"))
    (doc,) = load_documents(tmp_path)
    assert doc.text == CHINESE


def test_utf8_bom_is_stripped_and_crlf_becomes_lf(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfFirst line.\r\nSecond line.")
    (doc,) = load_documents(tmp_path)
    assert doc.text == "First line.\nSecond line."


def test_decode_bytes_handles_utf16_bom_and_refuses_binary():
    assert decode_bytes("héllo 世界".encode("utf-16")) == "héllo 世界"
    assert decode_bytes("héllo 世界".encode("utf-8")) == "héllo 世界"
    with pytest.raises(InvalidInputError, match="binary"):
        decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(InvalidInputError, match="binary"):
        decode_bytes(bytes(range(1, 9)) * 100)


def test_damaged_utf8_stays_utf8_instead_of_gb18030_mojibake():
    data = (CHINESE * 10).encode("utf-8")
    assert decode_bytes(data[:-1]) == (CHINESE * 10)[:-1]  # cut off inside the last character
    damaged = data[:30] + b"\xff" + data[30:]
    assert decode_bytes(damaged) == (CHINESE * 10)[:10] + "\ufffd" + (CHINESE * 10)[10:]


def test_binary_empty_and_unknown_files_in_a_folder_are_skipped_with_reasons(tmp_path, caplog):
    (tmp_path / "good.txt").write_text("Useful text.", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\x03 not text \x00")
    (tmp_path / "empty.md").write_text("  \n\t\n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with caplog.at_level(logging.WARNING, logger="deepseek_rag.ingest.loaders"):
        report = load_documents_with_report(tmp_path)
    assert [d.id for d in report.documents] == ["good.txt"]
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in report.skipped}
    assert set(reasons) == {"binary.txt", "empty.md", "image.png"}
    assert "binary" in reasons["binary.txt"]
    assert "empty" in reasons["empty.md"]
    assert "'.png'" in reasons["image.png"] and ".pdf" in reasons["image.png"]
    assert sum("skipping" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 3
    assert [d.id for d in load_documents(tmp_path)] == ["good.txt"]


def test_unknown_suffix_given_explicitly_raises_naming_it(tmp_path):
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"PK")
    with pytest.raises(InvalidInputError, match=r"'\.pptx'.*supported: \.txt"):
        load_documents(path)


def test_missing_path_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_documents(tmp_path / "nope")


def test_duplicate_ids_across_sources_raise_naming_the_id(tmp_path):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.txt").write_text(f"Text in {name}.", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="'same.txt'"):
        load_documents([tmp_path / "x", tmp_path / "y"])
    assert len(load_documents(tmp_path)) == 2  # the common parent gives distinct ids


def test_files_over_max_bytes_are_skipped(tmp_path):
    (tmp_path / "big.txt").write_text("word " * 100, encoding="utf-8")
    report = load_documents_with_report(tmp_path, max_bytes=100)
    assert report.documents == []
    assert "max_bytes=100" in report.skipped[0][1]


@pytest.mark.slow
def test_a_100mb_text_file_loads(tmp_path):
    line = "The quick brown fox jumps over the lazy dog; 高血压患者应当减少盐的摄入。\n"
    repeats = 100_000_000 // len(line.encode("utf-8"))
    (tmp_path / "huge.txt").write_text(line * repeats, encoding="utf-8")
    (doc,) = load_documents(tmp_path)
    assert len(doc.text) == len(line) * repeats
    assert doc.text.endswith(line)


def test_pdf_text_and_page_offsets(tmp_path):
    write_pdf(tmp_path / "paper.pdf", ["Hello first page.", "Second page text."])
    (doc,) = load_documents(tmp_path / "paper.pdf")
    assert doc.id == "paper.pdf"
    assert "Hello first page." in doc.text and "Second page text." in doc.text
    assert doc.metadata["pages"] == 2
    second = doc.metadata["page_offsets"][1]
    assert doc.text[second:].startswith("Second page text.")


def test_pdf_without_text_is_skipped(tmp_path):
    write_pdf(tmp_path / "scan.pdf", [""])
    report = load_documents_with_report(tmp_path)
    assert report.documents == []
    assert "no extractable text" in report.skipped[0][1]


BEIR_ROWS = [
    {"_id": "d1", "title": "Hypertension", "text": "Reduce salt intake.", "metadata": {"year": 2020}},
    {"_id": "d2", "title": "", "text": "No title here."},
    {"id": "d3", "text": "Uses the plain id key."},
]


def write_jsonl(path, rows, *, gz=False):
    data = "\n".join(json.dumps(row) if isinstance(row, dict) else row for row in rows) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(data)
    else:
        path.write_text(data, encoding="utf-8")


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.jsonl.gz"])
def test_beir_corpus_rows_become_documents_with_titles(tmp_path, name):
    write_jsonl(tmp_path / name, BEIR_ROWS, gz=name.endswith(".gz"))
    for docs in (load_documents(tmp_path / name), load_beir_corpus(tmp_path), load_beir_corpus(tmp_path / name)):
        assert [d.id for d in docs] == ["d1", "d2", "d3"]
        assert docs[0].text == "Reduce salt intake."
        assert docs[0].title == "Hypertension"
        assert docs[0].metadata["year"] == 2020
        assert docs[1].title is None


def test_bad_jsonl_rows_are_skipped_and_duplicates_raise(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [BEIR_ROWS[0], "{not json", {"_id": "e", "text": "  "}, {"text": "x"}])
    report = load_documents_with_report(tmp_path)
    assert [d.id for d in report.documents] == ["d1"]
    assert [path.rsplit(":", 1)[-1] for path, _ in report.skipped] == ["2", "3", "4"]
    write_jsonl(tmp_path / "corpus.jsonl", [BEIR_ROWS[0], BEIR_ROWS[0]])
    with pytest.raises(InvalidInputError, match="'d1'"):
        load_beir_corpus(tmp_path)


def test_beir_folder_without_corpus_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="corpus.jsonl"):
        load_beir_corpus(tmp_path)


def test_documents_from_records_accepts_strings_dicts_and_documents():
    docs = documents_from_records(
        [
            "first text",
            {"doc": "a", "body": "dict text", "title": "T", "metadata": {"lang": "en"}},
            Document(id="z", text="already a document"),
        ],
        id_key="doc",
        text_key="body",
    )
    assert [d.id for d in docs] == ["0", "a", "z"]
    assert docs[1].text == "dict text"
    assert docs[1].metadata == {"lang": "en", "title": "T"}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"text": "no id"}], "'id'"),
        (["same", Document(id="0", text="clash")], "duplicate document id '0'"),
        (["  "], "'0' has no text"),
    ],
)
def test_documents_from_records_rejects_bad_records(records, message):
    with pytest.raises(InvalidInputError, match=message):
        documents_from_records(records)


# ---------------------------------------------------------------------------------------------- bad input from the field
@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café société", "cp1252"),  # first release: skipped as "neither UTF-8 nor GB18030"
        ("café au lait", "latin-1"),
        ("L'élève étudie à l'école. Ça coûte 5 €.", "cp1252"),  # the euro sign only exists in Windows-1252
        ("Das Übermaß an Größe ist schön.", "cp1252"),
        ("Müller straße Größe", "cp1252"),  # valid GB18030 too, as mojibake: 'M黮ler stra遝 Gr鲞e'
        ("Привет, как дела? Это тест.", "cp1251"),
    ],
)
def test_legacy_encodings_are_detected_and_named(text, encoding):
    decoded = decode_text(text.encode(encoding))
    assert decoded.text == text
    assert decoded.encoding == ("cp1252" if encoding == "latin-1" else encoding)


@pytest.mark.parametrize("text", [CHINESE, "本合同自双方签字之日起生效。", "你好", "Intro\n\n中文摘要：本文研究了高血压。"])
def test_gb18030_still_wins_for_chinese(text):
    assert decode_text(text.encode("gb18030")) == (text, "gb18030")


def test_a_windows_1252_file_loads_and_the_report_names_its_encoding(tmp_path, caplog):
    (tmp_path / "fr.txt").write_bytes("Café société\r\nRésumé des clauses.".encode("cp1252"))
    (tmp_path / "en.txt").write_text("Plain UTF-8.", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="deepseek_rag.ingest.loaders"):
        report = load_documents_with_report(tmp_path)
    assert report.skipped == []
    assert report.documents[1].text == "Café société\nRésumé des clauses."
    assert report.encodings == {str(tmp_path / "fr.txt"): "cp1252"}
    assert any("fr.txt as cp1252" in r.getMessage() for r in caplog.records)


def test_a_jsonl_row_with_a_lone_surrogate_is_skipped_and_the_rest_kept(tmp_path):
    rows = [
        '{"_id": "good", "text": "Fine text \\ud83d\\ude00 with a whole emoji pair."}',
        '{"_id": "half", "text": "Broken emoji \\ud83d here."}',  # first release: tokenizer TypeError, no index
        '{"_id": "title", "title": "T \\udc00", "text": "Good text, bad title."}',
        '{"_id": "meta", "text": "Good text.", "metadata": {"note": "\\ud800"}}',
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = load_documents_with_report(tmp_path)
    assert [d.id for d in report.documents] == ["good"]
    assert report.documents[0].text == "Fine text 😀 with a whole emoji pair."
    reasons = dict(report.skipped)
    assert set(reasons) == {f"{tmp_path / 'corpus.jsonl'}:{n}" for n in (2, 3, 4)}
    assert "field 'text' holds U+D83D" in reasons[f"{tmp_path / 'corpus.jsonl'}:2"]
    assert "field 'title'" in reasons[f"{tmp_path / 'corpus.jsonl'}:3"]
    assert "field 'metadata'" in reasons[f"{tmp_path / 'corpus.jsonl'}:4"]


def test_a_gzip_with_a_valid_header_and_damaged_data_is_skipped_with_a_reason(tmp_path):
    write_jsonl(tmp_path / "good.jsonl", BEIR_ROWS[:1])
    whole = gzip.compress(json.dumps(BEIR_ROWS[1]).encode() * 200)
    (tmp_path / "bad.jsonl.gz").write_bytes(whole[:10] + bytes(b ^ 0x5A for b in whole[10:]))  # header intact
    report = load_documents_with_report(tmp_path)  # first release: zlib.error traceback
    assert [d.id for d in report.documents] == ["d1"]
    ((path, reason),) = report.skipped
    assert path == str(tmp_path / "bad.jsonl.gz") and "damaged gzip data" in reason
    with pytest.raises(InvalidInputError, match="damaged gzip data"):
        load_beir_corpus(tmp_path / "bad.jsonl.gz")


def write_pdf_with_content_filter(path, filter_name):
    """A one-page PDF whose content stream says it is compressed with ``filter_name``."""
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    stream = StreamObject()
    stream._data = b"\x00\x01 bytes no decoder understands"
    stream[NameObject("/Filter")] = NameObject(filter_name)
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.write(path)


@pytest.mark.parametrize(
    ("filter_name", "error"),
    [("/FooDecode", "NotImplementedError"), ("/JBIG2Decode", "DependencyError")],  # JBIG2 needs jbig2dec
)
def test_a_pdf_pypdf_cannot_decode_is_skipped_and_the_folder_still_loads(tmp_path, filter_name, error):
    import shutil

    if filter_name == "/JBIG2Decode" and shutil.which("jbig2dec"):
        error = ""  # jbig2dec is installed here: it fails on the bytes instead, with its own error
    write_pdf(tmp_path / "a-good.pdf", ["Readable page."])
    write_pdf_with_content_filter(tmp_path / "b-odd.pdf", filter_name)
    (tmp_path / "c.txt").write_text("After the PDF.", encoding="utf-8")
    report = load_documents_with_report(tmp_path)  # first release: the exception aborted the whole folder
    assert [d.id for d in report.documents] == ["a-good.pdf", "c.txt"]
    ((path, reason),) = report.skipped
    assert path.endswith("b-odd.pdf") and error in reason and "could not be extracted" in reason


def test_a_fifo_given_directly_is_named_as_such_and_skipped_inside_a_folder(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(InvalidInputError, match=r"is a FIFO \(named pipe\), not a regular file"):
        load_documents(tmp_path / "pipe.txt")  # first release: "does not exist"
    (tmp_path / "real.txt").write_text("Real text.", encoding="utf-8")
    report = load_documents_with_report(tmp_path)  # never opened: reading a FIFO would block
    assert [d.id for d in report.documents] == ["real.txt"]
    assert report.skipped == [(str(tmp_path / "pipe.txt"), "a FIFO (named pipe), not a regular file")]


def test_a_file_name_that_is_not_utf8_gives_an_escaped_id(tmp_path):
    import os

    name = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 file name, as old archives unpack
    (tmp_path / name).write_text("Text of a file with a Latin-1 name.", encoding="utf-8")
    (doc,) = load_documents(tmp_path)
    assert doc.id == "caf\\xe9.txt" and doc.metadata["title"] == "caf\\xe9"
    doc.id.encode("utf-8")  # storable: the first release failed in SQLite on the surrogate


@pytest.mark.parametrize("text", [None, b"bytes, not text", 42])
def test_a_document_with_text_that_is_not_a_str_is_a_clear_error(text):
    with pytest.raises(InvalidInputError, match="text"):  # first release: TypeError deep in the tokenizer
        Document(id="x", text=text)


def test_document_ids_and_metadata_are_checked():
    with pytest.raises(InvalidInputError, match="id must be a str"):
        Document(id=7, text="seven")
    with pytest.raises(InvalidInputError, match="metadata must be a dict"):
        Document(id="x", text="t", metadata=["not", "a", "dict"])
    assert Document("x", "t", metadata={"a": 1}.items().mapping).metadata == {"a": 1}


def test_text_with_a_lone_surrogate_is_refused_before_any_work(tiny_model_dir):
    from deepseek_rag import DocumentIndex, DualEncoder

    index = DocumentIndex(DualEncoder(model=str(tiny_model_dir)))
    with pytest.raises(InvalidInputError, match=r"'half': its text holds U\+D83D at character 5"):
        index.add_documents([Document("ok", "Fine text."), Document("half", "Half \ud83d of an emoji.")])
    assert len(index) == 0  # nothing of the batch was added
    with pytest.raises(InvalidInputError, match="byte 0xE9"):
        index.as_retriever().retrieve("caf\udce9")  # invalid UTF-8 from a terminal, as Python decodes it
