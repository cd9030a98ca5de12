"""Exported encoders: ONNX and TorchScript give the torch vectors, open torch-built indexes, int8 asks first."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from deepseek_rag import (
    Document,
    DocumentIndex,
    DualEncoder,
    EncoderMismatchError,
    IndexSettings,
    InvalidInputError,
)
from deepseek_rag.cli import cli
from deepseek_rag.encoding.export import export_encoder
from deepseek_rag.encoding.export_folder import EXPORT_MANIFEST_NAME, read_export_manifest
from deepseek_rag.errors import MissingDependencyError

import onnx  # noqa: F401  (the export extra: the dev install has it)
import onnxruntime  # noqa: F401

DOCS = [
    Document(id="lease", text="The tenant may terminate this lease with ninety days written notice to the landlord."),
    Document(id="nda", text="Each party shall keep the other party's confidential information secret for five years."),
    Document(id="law", text="This Agreement shall be governed by the laws of the State of New York."),
    Document(id="salt", text="Patients with hypertension should reduce salt intake. Insulin resistance precedes diabetes."),
    Document(id="pay", text="Payment is due in thirty days. Either party may terminate the agreement on notice."),
    Document(id="zh", text="高血压患者应当减少盐的摄入。本合同自双方签字之日起生效。"),
]
QUERIES = ["who may terminate the lease", "which law governs", "salt and blood pressure", "confidential information",
           "payment due", "合同生效"]
# batches of 1 and many, short and truncated texts: the graphs must not have kept the shapes they were traced with
TEXTS = ["x", "the quick brown fox jumps over the lazy dog " * 12, "高血压患者应当减少盐的摄入", "payment is due",
         "Either party may terminate this agreement on notice.", "governing law of new york"]


@pytest.fixture(scope="module")
def torch_encoder(tiny_model_dir):
    return DualEncoder(model=str(tiny_model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def torch_index(torch_encoder, tmp_path_factory):
    path = tmp_path_factory.mktemp("torch-index") / "idx"
    DocumentIndex.build(DOCS, torch_encoder, IndexSettings(index_spec="Flat")).save(path)
    return path


@pytest.fixture(scope="module")
def exports(torch_encoder, tmp_path_factory):
    """Every export of the tiny model, written once: onnx, onnx int8, torchscript, triton."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "onnx": export_encoder(torch_encoder, root / "onnx", format="onnx"),
        "int8": export_encoder(torch_encoder, root / "int8", format="onnx", int8=True),
        "torchscript": export_encoder(torch_encoder, root / "ts", format="torchscript"),
        "triton": export_encoder(torch_encoder, root / "triton", format="triton", name="tiny"),
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize("kind, backend", [("onnx", "onnx"), ("torchscript", "torchscript"), ("triton", "onnx")])
def test_float32_exports_reproduce_the_torch_vectors(exports, torch_encoder, kind, backend):
    encoder = DualEncoder(model=str(exports[kind]))
    assert encoder.backend.name == backend and encoder.dim == torch_encoder.dim
    assert encoder.fingerprint() | {"model": None} == torch_encoder.fingerprint() | {"model": None}
    for encode, reference in ((encoder.encode_queries, torch_encoder.encode_queries),
                              (encoder.encode_documents, torch_encoder.encode_documents)):
        assert _cosines(encode(TEXTS), reference(TEXTS)).min() >= 0.99999
        assert _cosines(encode(TEXTS[1:2]), reference(TEXTS[1:2])).min() >= 0.99999  # one text, 64 tokens
        np.testing.assert_allclose(np.linalg.norm(encode(TEXTS), axis=1), 1.0, atol=1e-5)


def test_a_torch_index_opens_with_its_onnx_export_and_ranks_the_same(torch_index, exports, torch_encoder):
    torch_side = DocumentIndex.load(torch_index, writable=False).as_retriever(top_k=3, mode="dense")
    onnx_index = DocumentIndex.load(torch_index, writable=False, encoder_overrides={"model": str(exports["onnx"])})
    assert onnx_index.encoder.backend.name == "onnx"
    onnx_side = onnx_index.as_retriever(top_k=3, mode="dense")
    for query in QUERIES:
        assert [h.chunk_id for h in onnx_side.retrieve(query)] == [h.chunk_id for h in torch_side.retrieve(query)]
    chunks = [c.text for d in DOCS for c in onnx_index.chunk(d)]
    assert _cosines(onnx_index.encoder.encode_documents(chunks), torch_encoder.encode_documents(chunks)).min() >= 0.99999


def test_exports_chunk_a_long_document_as_the_torch_encoder_does(exports, torch_encoder):
    long = Document(id="long", text=" ".join(d.text for d in DOCS) * 4, metadata={"title": "Mixed"})
    expected = [(c.start, c.end, c.text) for c in DocumentIndex(torch_encoder).chunk(long)]
    assert len(expected) > 3
    for kind in ("onnx", "torchscript"):
        exported = DocumentIndex(DualEncoder(model=str(exports[kind])))
        assert [(c.start, c.end, c.text) for c in exported.chunk(long)] == expected


def test_a_projection_is_inside_the_graph(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    model = shutil.copytree(tiny_model_dir, tmp_path / "with-dense")
    (model / "2_Dense").mkdir()
    (model / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 32, "out_features": 16, "bias": True, "activation_function": "torch.nn.modules.linear.Identity"}))
    torch.manual_seed(5)
    save_file({"linear.weight": torch.randn(16, 32), "linear.bias": torch.randn(16)}, str(model / "2_Dense" / "model.safetensors"))
    modules = json.loads((model / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    source = DualEncoder(model=str(model), dtype="float32", device="cpu")
    assert source.dim == 16
    exported = DualEncoder(model=str(export_encoder(source, tmp_path / "export")))
    assert exported.dim == 16 and read_export_manifest(tmp_path / "export").dim == 16
    assert _cosines(exported.encode_documents(TEXTS), source.encode_documents(TEXTS)).min() >= 0.99999


def test_an_index_built_with_the_export_opens_with_the_torch_encoder(exports, tiny_model_dir, tmp_path):
    path = tmp_path / "onnx-built"
    DocumentIndex.build(DOCS, DualEncoder(model=str(exports["onnx"])), IndexSettings(index_spec="Flat")).save(path)
    reopened = DocumentIndex.load(path, writable=False)
    assert reopened.encoder.backend.name == "onnx"  # the recorded model is the export
    torch_side = DocumentIndex.load(path, writable=False, encoder_overrides={"model": str(tiny_model_dir)})
    assert torch_side.encoder.backend.name == "torch"
    assert torch_side.as_retriever(top_k=1, mode="dense").retrieve("who may terminate the lease")


def test_per_side_adapters_are_merged_into_their_own_graphs(tiny_model_dir, tmp_path):
    from deepseek_rag.testing import build_tiny_adapter

    adapter = build_tiny_adapter(tiny_model_dir, tmp_path / "adapter")
    source = DualEncoder(model=str(tiny_model_dir), adapter=str(adapter), dtype="float32", device="cpu")
    folder = export_encoder(source, tmp_path / "export", format="onnx")
    manifest = read_export_manifest(folder)
    assert manifest.graphs == {"query": "query.onnx", "document": "document.onnx"}
    assert manifest.adapter_hashes == source.adapter_hashes and set(manifest.adapter_hashes) == {"query", "document"}
    exported = DualEncoder(model=str(folder))
    assert exported.fingerprint() | {"model": None} == source.fingerprint() | {"model": None}
    assert _cosines(exported.encode_queries(TEXTS), source.encode_queries(TEXTS)).min() >= 0.99999
    assert _cosines(exported.encode_documents(TEXTS), source.encode_documents(TEXTS)).min() >= 0.99999
    assert not np.allclose(exported.encode_queries(TEXTS), exported.encode_documents(TEXTS), atol=1e-3)

    query_only = DualEncoder(model=str(export_encoder(source, tmp_path / "query-only", sides=("query",))))
    assert query_only.encode_queries(["who may terminate"]).shape == (1, source.dim)
    with pytest.raises(InvalidInputError, match="only the query side"):
        query_only.encode_documents(["a document"])


def test_int8_export_says_so_and_needs_the_flag_on_a_float32_index(exports, torch_index, torch_encoder):
    manifest = read_export_manifest(exports["int8"])
    assert manifest.precision == "int8" and 0.9 < manifest.probe_cosine_min < 1.0
    encoder = DualEncoder(model=str(exports["int8"]))
    assert encoder.fingerprint()["quantization"] == "int8" and torch_encoder.fingerprint()["quantization"] is None
    assert _cosines(encoder.encode_queries(TEXTS), torch_encoder.encode_queries(TEXTS)).min() > 0.9
    with pytest.raises(EncoderMismatchError, match="allow_precision_mismatch"):
        DocumentIndex.load(torch_index, writable=False, encoder_overrides={"model": str(exports["int8"])})
    allowed = DocumentIndex.load(torch_index, writable=False, encoder_overrides={
        "model": str(exports["int8"]), "allow_precision_mismatch": True})
    assert allowed.as_retriever(top_k=2, mode="dense").retrieve("who may terminate the lease")

    runner = CliRunner()
    refused = runner.invoke(cli, ["query", str(torch_index), "payment due", "--model", str(exports["int8"])])
    assert refused.exit_code == 1 and "--allow-int8" in refused.output and "Traceback" not in refused.output
    done = runner.invoke(cli, ["query", str(torch_index), "payment due", "--model", str(exports["int8"]), "--allow-int8"])
    assert done.exit_code == 0, done.output


def test_an_old_record_without_quantization_is_float32(torch_encoder, exports):
    from deepseek_rag.encoding.fingerprint import check_fingerprint

    old = {k: v for k, v in torch_encoder.fingerprint().items() if k != "quantization"}  # written before exports
    check_fingerprint(old, DualEncoder(model=str(exports["onnx"])).fingerprint(), "old")
    with pytest.raises(EncoderMismatchError, match="int8"):
        check_fingerprint(old, DualEncoder(model=str(exports["int8"])).fingerprint(), "old")


def _pbtxt_tensors(text: str, kind: str) -> list[dict]:
    """The input or output blocks of a config.pbtxt: name, data_type, dims (parsed independently of the writer)."""
    body = re.search(rf"^{kind} \[(.*?)^\]", text, re.S | re.M).group(1)
    return [{"name": re.search(r'name: "([^"]+)"', block).group(1),
             "data_type": re.search(r"data_type: (\w+)", block).group(1),
             "dims": [int(d) for d in re.search(r"dims: \[([^\]]*)\]", block).group(1).replace(",", " ").split()]}
            for block in re.findall(r"\{(.*?)\}", body, re.S)]


def test_triton_repository_configs_match_the_onnx_graphs(exports, torch_encoder):
    import onnx

    repository = exports["triton"]
    onnx_types = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32"}
    for side in ("query", "document"):
        model_dir = repository / f"tiny_{side}"
        text = (model_dir / "config.pbtxt").read_text()
        assert re.search(r'^name: "tiny_' + side + '"$', text, re.M)
        assert re.search(r'^(backend: "onnxruntime"|platform: "onnxruntime_onnx")$', text, re.M)
        max_batch = int(re.search(r"^max_batch_size: (\d+)$", text, re.M).group(1))
        assert max_batch > 0 and re.search(r"^dynamic_batching \{", text, re.M)
        graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
        for kind, values in (("input", graph.input), ("output", graph.output)):
            declared = _pbtxt_tensors(text, kind)
            assert [t["name"] for t in declared] == [v.name for v in values]
            for tensor, value in zip(declared, values):
                shape = value.type.tensor_type.shape.dim
                assert tensor["data_type"] == onnx_types[value.type.tensor_type.elem_type]
                # batch axis left out (max_batch_size > 0); dynamic axes are -1
                assert tensor["dims"] == [d.dim_value if d.HasField("dim_value") else -1 for d in shape[1:]]
        assert _pbtxt_tensors(text, "input")[0]["dims"] == [-1]  # sequence length: dynamic
        assert _pbtxt_tensors(text, "output")[0]["dims"] == [torch_encoder.dim]


def test_cli_export_then_query_with_the_export(torch_index, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-onnx"
    done = runner.invoke(cli, ["export", str(torch_index), "--format", "onnx", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["precision"] == "float32"
    torch_hits = runner.invoke(cli, ["query", str(torch_index), "payment due", "--json", "--mode", "dense"])
    onnx_hits = runner.invoke(cli, ["query", str(torch_index), "payment due", "--json", "--mode", "dense", "--model", str(out)])
    assert onnx_hits.exit_code == 0, onnx_hits.output
    ids = [[h["chunk_id"] for h in json.loads(r.output)["hits"]] for r in (torch_hits, onnx_hits)]
    assert ids[0] == ids[1]
    again = runner.invoke(cli, ["export", str(torch_index), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert runner.invoke(cli, ["export", str(torch_index), "--out", str(out), "--overwrite"]).exit_code == 0


def test_the_exported_path_imports_neither_torch_nor_transformers(exports, torch_index, tmp_path):
    script = f"""
import sys
from deepseek_rag import Document, DocumentIndex, DualEncoder
from deepseek_rag.cli import cli
encoder = DualEncoder(model={str(exports["onnx"])!r})
index = DocumentIndex.build([Document(id="a", text="The tenant may terminate the lease."),
                             Document(id="b", text="Payment is due in thirty days.")], encoder)
index.save({str(tmp_path / "slim.idx")!r})
hits = DocumentIndex.load({str(tmp_path / "slim.idx")!r}).as_retriever(top_k=1).retrieve("terminate the lease")
assert hits[0].doc_id == "a", hits
cli.main(["query", {str(torch_index)!r}, "payment", "--model", {str(exports["onnx"])!r}], standalone_mode=False)
heavy = [m for m in ("torch", "transformers", "peft", "sentence_transformers", "deepseek_rag_finetune") if m in sys.modules]
print("HEAVY", heavy)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "HEAVY []" in done.stdout, done.stdout


def test_loading_the_torch_encoder_prints_no_progress_bar(tiny_model_dir, capfd):
    DualEncoder(model=str(tiny_model_dir))
    assert "Loading weights" not in capfd.readouterr().err


# ------------------------------------------------------------------------------------------------ bad input
def test_export_of_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a model")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "notes"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "neither an index directory" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_export_refuses_what_it_cannot_do(torch_encoder, exports, tmp_path):
    with pytest.raises(InvalidInputError, match="ONNX only"):
        export_encoder(torch_encoder, tmp_path / "x", format="torchscript", int8=True)
    with pytest.raises(InvalidInputError, match="already an export"):
        export_encoder(DualEncoder(model=str(exports["onnx"])), tmp_path / "y")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    with pytest.raises(InvalidInputError, match="refusing to overwrite"):
        export_encoder(torch_encoder, tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_a_graph_whose_output_does_not_match_the_manifest_dimension(exports, tmp_path):
    folder = shutil.copytree(exports["onnx"], tmp_path / "tampered")
    manifest = json.loads((folder / EXPORT_MANIFEST_NAME).read_text())
    (folder / EXPORT_MANIFEST_NAME).write_text(json.dumps({**manifest, "dim": manifest["dim"] * 2}))
    with pytest.raises(InvalidInputError, match=r"returns 32-dimensional vectors but its manifest says dim=64"):
        DualEncoder(model=str(folder))


def test_an_onnx_folder_missing_the_tokenizer(exports, tmp_path):
    folder = shutil.copytree(exports["onnx"], tmp_path / "no-tokenizer")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(InvalidInputError, match="no tokenizer.json"):
        DualEncoder(model=str(folder))


def test_onnxruntime_missing_names_the_extra(exports, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"deepseek-rag\[onnx\]"):
        DualEncoder(model=str(exports["onnx"]))


def test_backend_and_folder_must_agree(exports, tiny_model_dir):
    with pytest.raises(InvalidInputError, match="exported onnx encoder"):
        DualEncoder(model=str(exports["onnx"]), backend="torch")
    with pytest.raises(InvalidInputError, match="is not one"):
        DualEncoder(model=str(tiny_model_dir), backend="onnx")
    with pytest.raises(InvalidInputError, match="backend='torchscript'"):
        DualEncoder(model=str(exports["onnx"]), backend="torchscript")
    with pytest.raises(InvalidInputError, match="merged into the graphs"):
        DualEncoder(model=str(exports["onnx"]), adapter=str(tiny_model_dir))
    with pytest.raises(InvalidInputError, match="pooling inside"):
        DualEncoder(model=str(exports["onnx"]), pooling="cls")

def test_a_manifest_from_a_newer_library_is_refused(exports, tmp_path):
    folder = shutil.copytree(exports["onnx"], tmp_path / "newer")
    data = json.loads((folder / EXPORT_MANIFEST_NAME).read_text())
    (folder / EXPORT_MANIFEST_NAME).write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(InvalidInputError, match="format_version 99"):
        DualEncoder(model=str(folder))


def test_onnx_threads_and_devices(exports, monkeypatch):
    import onnxruntime

    assert DualEncoder(model=str(exports["onnx"]), threads=1).backend.describe()["threads"] == 1
    monkeypatch.setenv("DEEPSEEK_RAG_ONNX_THREADS", "2")
    assert DualEncoder(model=str(exports["onnx"])).backend.threads == 2
    monkeypatch.setenv("DEEPSEEK_RAG_ONNX_THREADS", "many")
    with pytest.raises(InvalidInputError, match="DEEPSEEK_RAG_ONNX_THREADS='many'"):
        DualEncoder(model=str(exports["onnx"]))
    monkeypatch.delenv("DEEPSEEK_RAG_ONNX_THREADS")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(InvalidInputError, match="onnxruntime-gpu"):
            DualEncoder(model=str(exports["onnx"]), device="cuda")
        assert DualEncoder(model=str(exports["onnx"])).device == "cpu"  # auto: CPU without a CUDA provider
