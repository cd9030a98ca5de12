"""Answers with sources: LLM choice, the extractive fallback, the LLM path (fake LLM and a fake
OpenAI-compatible server), streaming, and the ``ask`` command."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from deepseek_rag import Document, DocumentIndex, DualEncoder, EncoderConfig
from deepseek_rag.errors import InvalidInputError
from deepseek_rag.cli.ask import ask_command
from deepseek_rag.generation import (
    EXTRACTIVE_LABEL,
    answer,
    resolve_llm,
    sentence_spans,
)

CONTRACT = (
    "This Agreement shall be governed by the laws of the State of New York. "
    "Either party may terminate this agreement on thirty days notice. "
    "Payment is due in thirty days. The quick brown fox is not a party to this agreement. "
    "Either party may terminate the agreement for convenience. "
    "This Agreement shall be governed by the laws of New York and payment is due on notice. "
    "The parties agree that notice of termination is due in writing within thirty days. "
    "Which law governs the contract? The laws of the State of New York govern it."
)
CLINIC = (
    "Patients with hypertension should reduce salt intake. Insulin resistance precedes type 2 diabetes. "
    "Patients with diabetes should reduce salt intake and watch insulin. "
    "高血压患者应当减少盐的摄入。糖尿病的早期症状包括多饮、多尿。"
)
TEXTS = {"contract.txt": CONTRACT, "clinic.txt": CLINIC}
REPLY = "Either party may terminate on thirty days notice."
_LLM_ENV = ("DEEPSEEK_API_KEY", "DEEPSEEK_RAG_LLM_BASE_URL", "DEEPSEEK_RAG_LLM_MODEL", "DEEPSEEK_RAG_LLM_API_KEY")


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch):
    for name in _LLM_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return DualEncoder(EncoderConfig(model=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, encoder):
    folder = tmp_path_factory.mktemp("generation") / "idx"
    docs = [Document(doc_id, text, {"kind": doc_id.split(".")[0]}) for doc_id, text in TEXTS.items()]
    DocumentIndex.build(docs, encoder, contextual_headers=False).save(folder)
    return folder


@pytest.fixture(scope="module")
def index(index_dir, encoder):
    return DocumentIndex.load(index_dir, encoder)


def _citations(text: str) -> list[tuple[str, int, int]]:
    return [(d, int(s), int(e)) for d, s, e in re.findall(r"\[([^\[\]:]+):(\d+)-(\d+)\]", text)]


# ---------------------------------------------------------------------------------------------- extractive
def test_sentence_spans_trim_and_split_english_and_chinese():
    text = "  First one.  Second?\nThird 3.14 stays!高血压。糖尿病？ "
    assert [text[s:e] for s, e in sentence_spans(text)] == ["First one.", "Second?", "Third 3.14 stays!高血压。", "糖尿病？"]


def test_sentence_spans_join_wrapped_lines_and_skip_headings():
    text = "# Termination\n\nEither party may terminate\nthis Agreement on notice. A second\nsentence\n\nNo full stop here\n## Payment\nDue in 30 days."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Either party may terminate\nthis Agreement on notice.", "A second\nsentence", "No full stop here", "Due in 30 days."
    ]


def test_extractive_answer_cites_the_matching_sentence_first(index):
    sentence = "Either party may terminate the agreement for convenience."
    result = answer(index, sentence, top_k=3, filters={"doc_id": "contract.txt"})
    assert result.mode == "extractive"
    assert result.text.startswith(EXTRACTIVE_LABEL)
    cited = _citations(result.text)
    assert len(cited) == 3
    start = CONTRACT.index(sentence)
    assert cited[0] == ("contract.txt", start, start + len(sentence))
    assert result.text.index(sentence) < result.text.index(f"[contract.txt:{start}-")


def test_extractive_citations_point_at_whole_sentences_of_the_source(index):
    result = answer(index, "salt intake and insulin", top_k=4)
    assert len(result.sources) == 4
    for doc_id, start, end in _citations(result.text):
        text = TEXTS[doc_id]
        assert text[start:end] in result.text
        assert start == 0 or text[:start].rstrip()[-1] in ".?!。？！；"  # begins where a sentence begins
        assert text[end - 1] in ".?!。？！；"
    for source in result.sources:
        assert TEXTS[source.doc_id][source.start : source.end] == source.text


def test_extractive_answer_without_matches(index):
    result = answer(index, "anything", filters={"doc_id": "no-such-doc"})
    assert result.sources == []
    assert result.text == f"{EXTRACTIVE_LABEL} no passage in the index matches the question."


def test_extractive_stream_yields_the_text(index):
    result = answer(index, "governing law", top_k=2, stream=True)
    assert "".join(result.text_stream) == result.text


def test_answer_accepts_folder_index_and_retrievers(index, index_dir, encoder):
    expected = answer(index, "payment due", top_k=2).to_dict()
    assert answer(index.as_retriever(), "payment due", top_k=2).to_dict() == expected
    assert answer(str(index_dir), "payment due", top_k=2).to_dict()["sources"][0]["doc_id"] in TEXTS
    import llama_index.retrievers.deepseek_rag as llama

    assert answer(llama.DeepSeekRAGRetriever(index), "payment due", top_k=2).to_dict() == expected


def test_empty_question_is_an_error(index):
    with pytest.raises(InvalidInputError, match="empty"):
        answer(index, "  ")


# ---------------------------------------------------------------------------------------------- choosing the LLM
def test_resolve_llm_order(monkeypatch):
    import llama_index.llms.deepseek  # noqa: F401  (the [llm] extra: the dev install has it)
    import llama_index.llms.openai_like  # noqa: F401

    assert resolve_llm() is None
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    deepseek = resolve_llm()
    assert type(deepseek).__name__ == "DeepSeek" and deepseek.model == "deepseek-chat"
    assert deepseek.api_base.startswith("https://api.deepseek.com")
    local = resolve_llm(base_url="http://localhost:8000/v1", model_name="my-model")  # explicit server wins
    assert type(local).__name__ == "OpenAILike" and local.api_base == "http://localhost:8000/v1"
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_BASE_URL", "http://localhost:11434/v1")
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_MODEL", "qwen2.5:7b")
    from_env = resolve_llm()
    assert (from_env.api_base, from_env.model) == ("http://localhost:11434/v1", "qwen2.5:7b")
    sentinel = object()
    assert resolve_llm(sentinel) is sentinel


def test_server_without_model_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_BASE_URL", "http://localhost:11434/v1")
    with pytest.raises(InvalidInputError, match="DEEPSEEK_RAG_LLM_MODEL"):
        resolve_llm()


# ---------------------------------------------------------------------------------------------- LLM path
@pytest.fixture
def recording_llm():
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class RecordingLLM(CustomLLM):
        prompts: list = []

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=16_384, num_output=256, model_name="recording-llm")

        @llm_completion_callback()
        def complete(self, prompt, formatted=False, **kwargs):
            self.prompts.append(prompt)
            return CompletionResponse(text=REPLY)

        @llm_completion_callback()
        def stream_complete(self, prompt, formatted=False, **kwargs):
            self.prompts.append(prompt)
            words = REPLY.split(" ")
            return (CompletionResponse(text=" ".join(words[: i + 1]), delta=(" " if i else "") + w)
                    for i, w in enumerate(words))

    return RecordingLLM(prompts=[])


def test_llm_answer_gives_the_llm_the_sources(index, recording_llm):
    result = answer(index, "who may terminate the agreement?", llm=recording_llm, top_k=3)
    assert result.mode == "llm" and result.text == REPLY
    assert len(result.sources) == 3
    prompt = "\n".join(recording_llm.prompts)
    for source in result.sources:
        assert source.text in prompt
        assert TEXTS[source.doc_id][source.start : source.end] == source.text


def test_llm_answer_streams(index, recording_llm):
    result = answer(index, "which law governs?", llm=recording_llm, top_k=2, stream=True)
    assert result.text == ""
    assert "".join(result.text_stream) == REPLY
    assert result.text == REPLY and len(result.sources) == 2


class _FakeOpenAIServer(BaseHTTPRequestHandler):
    """Just enough of /v1/chat/completions (plain and server-sent events) for OpenAILike."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        base = {"id": "chatcmpl-1", "created": 0, "model": body["model"]}
        if body["model"] in _MISBEHAVIOURS:
            _MISBEHAVIOURS[body["model"]](self, body, base)
            return
        if body["model"] == "missing-model":  # as Ollama answers for a model it has not pulled
            error = json.dumps({"error": {"message": "model 'missing-model' not found", "type": "api_error"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            words = REPLY.split(" ")
            for i, word in enumerate(words):
                delta = {"role": "assistant", "content": (" " if i else "") + word}
                chunk = {**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            done = {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
            return
        payload = json.dumps({
            **base, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)


def _html_page(handler, body, base):  # a reverse proxy's welcome page, with status 200
    handler.reply(200, b"<html><body><h1>Welcome to nginx!</h1></body></html>", "text/html")


def _empty_choices(handler, body, base):
    if body.get("stream"):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        chunk = {**base, "object": "chat.completion.chunk", "choices": []}
        handler.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return
    handler.reply(200, json.dumps({**base, "object": "chat.completion", "choices": []}).encode(), "application/json")


def _hang(handler, body, base):
    handler.server.release.wait(10)  # longer than any --timeout the tests give


def _busy_once(handler, body, base):  # 503 with Retry-After on the first request, then an answer
    if len(handler.server.requests) == 1:
        handler.reply(503, b'{"error": {"message": "loading model"}}', "application/json", Retry_After="0")
        return
    payload = {**base, "object": "chat.completion",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}]}
    handler.reply(200, json.dumps(payload).encode(), "application/json")


def _stream_then_hang(handler, body, base):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.end_headers()
    chunk = {**base, "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Either party"}, "finish_reason": None}]}
    handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
    handler.wfile.flush()
    handler.server.release.wait(10)


_MISBEHAVIOURS = {"html-page": _html_page, "empty-choices": _empty_choices, "hang": _hang, "busy-once": _busy_once,
                  "stream-then-hang": _stream_then_hang}


@pytest.fixture
def openai_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAIServer)
    server.requests = []
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.release.set()
    server.shutdown()
    server.server_close()


def test_openai_compatible_server_from_environment(index, openai_server, monkeypatch):
    server, url = openai_server
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_MODEL", "deepseek-r1:7b")
    result = answer(index, "who may terminate?", top_k=2)
    assert result.mode == "llm" and result.text == REPLY
    request = server.requests[-1]
    assert request["model"] == "deepseek-r1:7b"
    sent = json.dumps(request["messages"], ensure_ascii=False)
    assert all(json.dumps(s.text, ensure_ascii=False)[1:-1] in sent for s in result.sources)

    streamed = answer(index, "who may terminate?", top_k=2, stream=True)
    assert "".join(streamed.text_stream) == REPLY
    assert server.requests[-1]["stream"] is True


def test_the_service_answers_with_the_llm_from_the_version_it_pinned(index_dir, tiny_model_dir, openai_server,
                                                                    monkeypatch, tmp_path):
    import shutil

    import httpx

    from deepseek_rag.serve import ServeSettings
    from serve_helpers import running_server

    server, url = openai_server
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_BASE_URL", url)
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_MODEL", "deepseek-r1:7b")
    served_dir = tmp_path / "served"
    shutil.copytree(index_dir, served_dir)
    with running_server(ServeSettings(index=str(served_dir), model=str(tiny_model_dir), watch_s=0.1)) as base:
        reply = httpx.post(f"{base}/v1/ask", json={"question": "who may terminate?", "top_k": 2}, timeout=30).json()
        assert reply["mode"] == "llm" and reply["answer"] == REPLY and len(reply["sources"]) == 2
        sent = json.dumps(server.requests[-1]["messages"], ensure_ascii=False)
        assert all(json.dumps(s["text"], ensure_ascii=False)[1:-1] in sent for s in reply["sources"])
        with httpx.stream("POST", f"{base}/v1/ask", json={"question": "who may terminate?", "stream": True},
                          timeout=30) as streamed:
            events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: ")]
        assert "".join(e["text"] for e in events if "text" in e) == REPLY


# ---------------------------------------------------------------------------------------------- ask command
def test_ask_command_extractive_json(index_dir):
    result = CliRunner().invoke(ask_command, [str(index_dir), "Which law governs the contract?", "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "extractive" and data["answer"].startswith(EXTRACTIVE_LABEL)
    assert len(data["sources"]) == 2 and {"doc_id", "start", "end", "score", "text"} <= set(data["sources"][0])


def test_ask_command_prints_answer_then_sources(index_dir):
    result = CliRunner().invoke(ask_command, [str(index_dir), "salt intake", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(EXTRACTIVE_LABEL)
    assert "Sources:\n  1. " in result.stdout and "  2. " in result.stdout


def test_ask_command_with_server_streams(index_dir, openai_server):
    server, url = openai_server
    args = [str(index_dir), "who may terminate?", "--base-url", url, "--model-name", "m", "--stream"]
    result = CliRunner().invoke(ask_command, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(REPLY + "\n")
    assert server.requests[-1]["stream"] is True


def test_ask_command_user_errors_are_one_line(index_dir, openai_server):
    server, url = openai_server
    result = CliRunner().invoke(ask_command, [str(index_dir), "q", "--base-url", url])
    assert result.exit_code == 1
    assert "Error: an OpenAI-compatible server" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(ask_command, [str(index_dir), "q", "--base-url", url, "--model-name", "missing-model"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert f"the LLM at {url} failed: NotFoundError" in missing.output and "not found" in missing.output


# ---------------------------------------------------------------------------------------------- a server misbehaving
def ask(index_dir, url, model, *extra):
    from deepseek_rag.cli import cli

    args = ["ask", str(index_dir), "who may terminate?", "--base-url", url, "--model-name", model, *extra]
    return CliRunner().invoke(cli, args)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ")
    return line


@pytest.mark.parametrize("stream", [False, True])
def test_a_200_that_is_not_json_is_an_error_naming_the_server(index_dir, openai_server, stream):
    server, url = openai_server
    result = ask(index_dir, url, "html-page", *(["--stream"] if stream else []))
    # first release: AttributeError traceback; with --stream an empty answer and exit status 0
    line = one_line_error(result)
    assert f"the LLM at {url} answered" in line and "Welcome to nginx!" in line and "text/html" in line
    assert ("not an event stream" if stream else "not JSON") in line and "/v1" in line
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_completion_without_choices_is_a_clear_error(index_dir, openai_server, stream):
    server, url = openai_server
    result = ask(index_dir, url, "empty-choices", *(["--stream"] if stream else []))  # first release: IndexError
    line = one_line_error(result)
    assert f"the LLM at {url}" in line
    assert ("streamed an empty answer" if stream else "an empty choices list") in line


def test_a_hanging_server_times_out_with_a_clear_error_and_no_retry(index_dir, openai_server):
    import time

    server, url = openai_server
    started = time.perf_counter()
    result = ask(index_dir, url, "hang", "--timeout", "1")  # first release: 4 min 15 s of silence
    elapsed = time.perf_counter() - started
    line = one_line_error(result)
    assert f"the LLM at {url} did not answer within 1 s" in line and "--timeout" in line
    assert elapsed < 8 and len(server.requests) == 1  # a timeout is never retried (the index loads in the 8 s too)


def test_the_timeout_comes_from_the_environment(index_dir, openai_server, monkeypatch):
    server, url = openai_server
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_TIMEOUT", "0.5")
    line = one_line_error(ask(index_dir, url, "hang", "--stream"))
    assert "did not answer within 0.5 s" in line and "DEEPSEEK_RAG_LLM_TIMEOUT" in line
    assert resolve_llm(base_url=url, model_name="m").timeout == 0.5
    monkeypatch.setenv("DEEPSEEK_RAG_LLM_TIMEOUT", "soon")
    with pytest.raises(InvalidInputError, match="DEEPSEEK_RAG_LLM_TIMEOUT='soon' must be a positive number"):
        resolve_llm(base_url=url, model_name="m")
    assert resolve_llm() is None  # no server: the extractive answer needs no timeout, so a bad one is no error


def test_a_server_busy_once_is_retried(index_dir, openai_server):
    server, url = openai_server
    result = ask(index_dir, url, "busy-once")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(REPLY) and len(server.requests) == 2


def test_a_stream_that_stops_is_never_retried(index_dir, openai_server):
    server, url = openai_server
    result = ask(index_dir, url, "stream-then-hang", "--stream", "--timeout", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    partial, error = result.output.strip().split("\n")
    assert partial == "Either party"
    assert error.startswith(f"Error: the LLM at {url} did not answer within 1 s")
    assert "after 12 streamed characters: the answer is incomplete" in error
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_a_clear_error():
    import socket

    import llama_index.llms.openai_like  # noqa: F401

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    llm = resolve_llm(base_url=url, model_name="m", timeout=1)
    llm._http_client.backoff = 0.01
    from llama_index.core.llms import ChatMessage

    from deepseek_rag.generation import LLMError, llm_error

    with pytest.raises(Exception) as raised:
        llm.chat([ChatMessage(role="user", content="hi")])
    error = llm_error(raised.value, url, 1)
    assert isinstance(error, LLMError) and str(error).startswith(f"could not connect to the LLM at {url}")
