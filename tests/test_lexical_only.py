"""Lexical-only indexes: BM25 without vectors (``dense="off"``, or ``"auto"`` on text the encoder cannot read),
searched in sparse mode everywhere, followed by later writes, and given vectors later by ``densify``."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder, IndexSettings, InvalidInputError
from deepseek_rag.cli import cli
from deepseek_rag.serve import ServeSettings
from deepseek_rag.sparse.bm25 import SparseConfig
from deepseek_rag.testing import build_tiny_model
from serve_helpers import running_server

LAWS = {  # made-up provisions in the style of Chinese statutes
    "lease-termination": ("租赁合同", "承租人未经出租人同意转租的，出租人可以解除合同。租赁期限届满，承租人应当返还租赁物。"),
    "labour-probation": ("劳动合同", "劳动合同期限三个月以上不满一年的，试用期不得超过一个月。用人单位应当依法支付工资。"),
    "sale-defect": ("买卖合同", "出卖人交付的标的物不符合质量要求的，买受人可以要求修理、更换或者退货，并可以要求赔偿损失。"),
    "loan-interest": ("借款合同", "借款合同对支付利息没有约定的，视为没有利息。借款人应当按照约定的期限返还借款。"),
}
ENGLISH = {
    "lease": ("Lease", "The tenant pays rent monthly and the landlord repairs the roof after storms."),
    "nda": ("NDA", "Each party keeps the other party's confidential information secret for five years."),
}


def documents(texts: dict) -> list[Document]:
    return [Document(doc_id, text, {"title": title}) for doc_id, (title, text) in texts.items()]


EXTRA = "借款人逾期不返还借款的，应当按照约定支付逾期利息。赠与人在赠与财产的权利转移之前可以撤销赠与。"


@pytest.fixture(scope="module")
def chinese_model_dir(tmp_path_factory):
    """A tiny encoder whose vocabulary holds the characters of these texts."""
    texts = [f"{title}。{text}" for title, text in [*LAWS.values(), *ENGLISH.values()]] + [EXTRA]
    return build_tiny_model(tmp_path_factory.mktemp("chinese-model"), texts)


@pytest.fixture(scope="module")
def encoder(chinese_model_dir):
    return DualEncoder(model=str(chinese_model_dir))


@pytest.fixture(scope="module")
def english_model_dir(tmp_path_factory):
    """A tiny encoder whose vocabulary has no Chinese: Chinese text is almost all [UNK] to it."""
    texts = ["The tenant pays rent monthly. The landlord repairs the roof. Either party may terminate the lease.",
             "Confidential information stays secret for five years. Payment is due within thirty days."]
    return build_tiny_model(tmp_path_factory.mktemp("english-model"), texts)


def test_a_lexical_only_index_has_no_vectors_and_is_searched_in_sparse_mode(encoder, tmp_path):
    index = DocumentIndex.build(documents(LAWS), encoder, dense="off")
    assert not index.has_dense and index.has_sparse and len(index.vectors) == 0
    hits = index.as_retriever(top_k=2).retrieve("出租人可以解除合同吗")
    assert hits[0].doc_id == "lease-termination" and hits[0].text.startswith("承租人")
    assert index.as_retriever().mode == "sparse"
    for mode in ("dense", "hybrid"):
        with pytest.raises(InvalidInputError, match=f"mode='{mode}' needs vectors: this index is lexical-only.*densify"):
            index.as_retriever(mode=mode)
    with pytest.raises(InvalidInputError, match="lexical-only"):
        index.search_vectors(encoder.encode_queries(["借款"]), 3)

    index.save(tmp_path / "laws.idx")
    record = json.loads((tmp_path / "laws.idx" / "manifest.json").read_text(encoding="utf-8"))
    assert record["settings"]["dense"] == "off" and record["vectors"] == {"backend": None}
    assert not list((tmp_path / "laws.idx").rglob("*.faiss"))

    reopened = DocumentIndex.load(tmp_path / "laws.idx", encoder)
    assert not reopened.has_dense
    reopened.upsert_documents([Document("loan-interest", "借款人逾期不返还借款的，应当按照约定支付逾期利息。")])
    reopened.add_documents([Document("gift", "赠与人在赠与财产的权利转移之前可以撤销赠与。")])
    reopened.save()
    again = DocumentIndex.load(tmp_path / "laws.idx", encoder)
    assert not again.has_dense and not list((tmp_path / "laws.idx").rglob("*.faiss")) and len(again) == 5
    assert again.as_retriever(top_k=1).retrieve("逾期利息")[0].text.startswith("借款人逾期")
    assert again.as_retriever(top_k=1).retrieve("撤销赠与")[0].doc_id == "gift"


def test_nothing_to_search_is_refused():
    with pytest.raises(InvalidInputError, match="leaves nothing to search"):
        IndexSettings(dense="off", sparse=SparseConfig(enabled=False))
    with pytest.raises(InvalidInputError, match="dense='maybe' is not one of on, off, auto"):
        IndexSettings(dense="maybe")


def test_auto_builds_bm25_only_when_the_encoder_cannot_read_the_text(english_model_dir, encoder):
    english = DualEncoder(model=str(english_model_dir))
    chinese = DocumentIndex.build(documents(LAWS), english, dense="auto")
    assert not chinese.has_dense and chinese.settings.dense == "off"
    assert "reads 0% of the tokens" in chinese.dense_note and "BM25 side only" in chinese.dense_note
    chinese.add_documents(documents(ENGLISH))  # the decision stands for later writes
    assert not chinese.has_dense

    readable = DocumentIndex.build(documents(ENGLISH), english, dense="auto")
    assert readable.has_dense and readable.settings.dense == "on" and readable.dense_note is None
    assert DocumentIndex.build(documents(LAWS), encoder, dense="auto").has_dense  # this one reads Chinese


def test_densify_gives_vectors_as_a_new_version_readers_switch_to(encoder, english_model_dir, tmp_path):
    folder = tmp_path / "laws.idx"
    lexical = DocumentIndex.build(documents(LAWS), encoder, dense="off")
    lexical.save(folder)
    lexical.delete_documents("sale-defect")  # deleted chunks must not come back with vectors
    lexical.save()
    reader = DocumentIndex.load(folder, encoder, writable=False)

    writer = DocumentIndex.load(folder, encoder)
    with pytest.raises(InvalidInputError, match="reads 0% of the tokens.*force"):
        writer.densify(DualEncoder(model=str(english_model_dir)))
    assert writer.densify(encoder) == 3
    assert not reader.has_dense  # unpublished: readers still see the lexical-only version
    writer.save()
    assert reader.refresh() and reader.has_dense and len(reader.vectors) == 3 and len(reader) == 3
    hits = reader.as_retriever(top_k=3).retrieve("试用期不得超过一个月")  # hybrid now
    assert reader.as_retriever().mode == "hybrid" and hits[0].doc_id == "labour-probation"
    assert "sale-defect" not in {h.doc_id for h in reader.as_retriever(mode="dense", top_k=5).retrieve("退货")}
    with pytest.raises(InvalidInputError, match="has a dense side already"):
        writer.densify(encoder)
    writer.add_documents([Document("gift", "赠与人可以撤销赠与。")])  # later adds are embedded
    writer.save()
    assert len(DocumentIndex.load(folder, encoder).vectors) == 4


def test_a_failed_densify_publish_leaves_the_lexical_only_version(encoder, tmp_path, monkeypatch):
    from deepseek_rag.vectors.faiss_store import FaissVectorStore

    folder = tmp_path / "laws.idx"
    DocumentIndex.build(documents(LAWS), encoder, dense="off").save(folder)
    writer = DocumentIndex.load(folder, encoder)
    writer.densify(encoder)

    def crash(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(FaissVectorStore, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        writer.save()
    writer.close()
    after = DocumentIndex.load(folder, encoder)
    assert not after.has_dense and len(after) == 4 and after.version == 1


def test_cli_index_dense_off_and_auto_query_add_and_densify(tmp_path, chinese_model_dir, english_model_dir):
    corpus = tmp_path / "laws"
    corpus.mkdir()
    for doc_id, (_, text) in LAWS.items():
        (corpus / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    runner = CliRunner()
    out = tmp_path / "auto.idx"
    result = runner.invoke(cli, ["index", str(corpus), "--out", str(out), "--dense", "auto", "--model", str(english_model_dir)])
    assert result.exit_code == 0, result.output
    assert "BM25 side only" in result.stderr and "lexical-only: BM25, no vectors" in result.stdout

    off = tmp_path / "off.idx"
    assert runner.invoke(cli, ["index", str(corpus), "--out", str(off), "--dense", "off",
                               "--model", str(chinese_model_dir)]).exit_code == 0
    found = runner.invoke(cli, ["query", str(off), "试用期", "--top-k", "1", "--json"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["hits"][0]["doc_id"] == "labour-probation.txt"
    refused = runner.invoke(cli, ["query", str(off), "试用期", "--mode", "dense"])
    assert refused.exit_code == 1 and "Error: mode='dense' needs vectors" in refused.output and "Traceback" not in refused.output
    extra = tmp_path / "gift.txt"
    extra.write_text("赠与人可以撤销赠与。", encoding="utf-8")
    assert runner.invoke(cli, ["add", str(off), str(extra)]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["info", str(off)]).stdout)["dense"] is False

    unreadable = runner.invoke(cli, ["densify", str(off), "--model", str(english_model_dir)])
    assert unreadable.exit_code == 1 and "Error:" in unreadable.output and "--force" in unreadable.output
    done = runner.invoke(cli, ["densify", str(off), "--model", str(chinese_model_dir)])
    assert done.exit_code == 0, done.output
    assert "embedded 5 chunks (Flat)" in done.stdout and "(version 3)" in done.stdout
    info = json.loads(runner.invoke(cli, ["info", str(off)]).stdout)
    assert info["dense"] is True and info["version"] == 3
    hybrid = runner.invoke(cli, ["query", str(off), "试用期", "--mode", "hybrid", "--json"])
    assert hybrid.exit_code == 0 and json.loads(hybrid.stdout)["hits"][0]["doc_id"] == "labour-probation.txt"
    again = runner.invoke(cli, ["densify", str(off), "--model", str(chinese_model_dir)])
    assert again.exit_code == 1 and "has a dense side already" in again.output


def test_adapters_and_the_server_work_on_a_lexical_only_index(encoder, chinese_model_dir, tmp_path):
    from langchain_deepseek_rag import DeepSeekRAGRetriever as LangChainRetriever
    from llama_index.retrievers.deepseek_rag import DeepSeekRAGRetriever as LlamaRetriever

    folder = tmp_path / "laws.idx"
    DocumentIndex.build(documents(LAWS), encoder, dense="off").save(folder)
    index = DocumentIndex.load(folder, encoder)
    nodes = LlamaRetriever(index, similarity_top_k=1).retrieve("借款利息")
    assert nodes[0].node.metadata["doc_id"] == "loan-interest"
    with pytest.raises(InvalidInputError, match="lexical-only"):
        LlamaRetriever(index, mode="hybrid")
    docs = LangChainRetriever(index=index, k=1).invoke("试用期")
    assert docs[0].metadata["doc_id"] == "labour-probation"

    settings = ServeSettings(index=str(folder), model=str(chinese_model_dir), api_key="k", watch_s=0.1, timeout_s=20)
    with running_server(settings) as server:
        ok = httpx.post(f"{server}/v1/retrieve", json={"query": "退货和赔偿损失", "top_k": 1})
        assert ok.status_code == 200, ok.text
        assert ok.json()["hits"][0]["doc_id"] == "sale-defect"
        dense = httpx.post(f"{server}/v1/retrieve", json={"query": "退货", "mode": "dense"})
        assert dense.status_code == 422 and "mode='dense' needs vectors" in dense.json()["detail"]["message"]
        upsert = httpx.post(f"{server}/v1/documents", headers={"Authorization": "Bearer k"},
                            json={"documents": [{"id": "gift", "text": "赠与人可以撤销赠与。"}]})
        assert upsert.status_code == 200, upsert.text
        found = httpx.post(f"{server}/v1/retrieve", json={"query": "撤销赠与", "top_k": 1}).json()
        assert found["hits"][0]["doc_id"] == "gift" and found["index_version"] == 2
    assert not list(folder.rglob("*.faiss"))
