"""The OpenAI-compatible API with the official ``openai`` SDK against a real uvicorn server on 127.0.0.1.

Chat completions (extractive, and through a scripted LlamaIndex LLM for the condense-and-cite path), streaming
and not; embeddings (both sides, float and base64, checked against the encoder itself); the model list; every
bad input the issue names; and the inspector's read route ``/v1/context``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import Field

from deepseek_rag.encoding.dual_encoder import DualEncoder
from deepseek_rag.serve import ServeSettings, chat, openai_routes
from deepseek_rag.testing import build_tiny_model

from serve_helpers import running_server

API_KEY, READ_KEY = "write-key", "read-key"
READ = {"Authorization": f"Bearer {READ_KEY}"}
DOCS = [
    {"id": "lease.txt", "text": "# Repairs\nThe tenant repairs the roof. The landlord pays for the boiler.", "metadata": {"year": 2021}},
    {"id": "nda.txt", "text": "The receiving party keeps the information confidential for two years.", "metadata": {"year": 2022}},
    {"id": "law.txt", "text": "This agreement is governed by the laws of New York.", "metadata": {"year": 2023}},
]
TEXTS = {d["id"]: d["text"] for d in DOCS}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny encoder whose two sides differ (e5-style prefixes), so query and document vectors can be told apart."""
    return build_tiny_model(tmp_path_factory.mktemp("prefixed-model"), prompts={"query": "query: ", "document": "passage: "})


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    settings = ServeSettings(index=str(tmp_path_factory.mktemp("openai") / "index"), model=str(model_dir),
                             api_key=API_KEY, read_key=READ_KEY, timeout_s=30)
    with running_server(settings) as url:
        httpx.post(f"{url}/v1/documents", json={"documents": DOCS}, headers={"Authorization": f"Bearer {API_KEY}"},
                   timeout=60).raise_for_status()
        yield url


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server}/v1", api_key=READ_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server, headers=READ, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def encoder(model_dir):
    return DualEncoder(model=str(model_dir))


def assert_sources_point_into_documents(sources: list[dict[str, Any]]) -> None:
    assert sources and [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    for source in sources:
        assert TEXTS[source["doc_id"]][source["start"]:source["end"]] == source["text"]


# ------------------------------------------------------------------------------------------- chat, extractive
def test_chat_completion_with_the_openai_sdk_cites_its_sources(client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Who repairs the roof?"}])
    assert completion.object == "chat.completion" and completion.model == "gpt-4o-mini"  # any name, echoed
    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.role == "assistant"
    extra = completion.model_extra
    assert extra["mode"] == "extractive" and extra["arm"] == "default" and extra["index_version"] == 2
    assert extra["standalone_question"] == "Who repairs the roof?" and extra["trimmed_messages"] == 0
    assert_sources_point_into_documents(extra["sources"])
    assert "[1]" in text and ":0-" not in text  # [doc:start-end] renumbered to [n]
    assert "The tenant repairs the roof." in text
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0


def test_streamed_chat_completion_matches_the_plain_one(client):
    messages = [{"role": "user", "content": "Who repairs the roof?"}]
    plain = client.chat.completions.create(model="default", messages=messages)
    chunks = list(client.chat.completions.create(model="default", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == plain.choices[0].message.content
    last_choice = [c for c in chunks if c.choices][-1]
    assert last_choice.choices[0].finish_reason == "stop"
    assert last_choice.model_extra["sources"] == plain.model_extra["sources"]
    assert last_choice.model_extra["index_version"] == 2 and last_choice.model_extra["arm"] == "default"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_the_stream_is_server_sent_events_ending_in_done(http):
    body = {"messages": [{"role": "user", "content": "Who pays for the boiler?"}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_retrieval_knobs_are_extra_fields(client):
    completion = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "laws"}],
        extra_body={"top_k": 1, "filters": {"year": {"$gte": 2023}}})
    assert [s["doc_id"] for s in completion.model_extra["sources"]] == ["law.txt"]


def test_max_tokens_cuts_the_extractive_answer_at_a_sentence(client, encoder):
    label = chat.token_counter(encoder)(["Extractive answer (no LLM configured):"])[0]
    completion = client.chat.completions.create(model="default", max_tokens=label,
                                                messages=[{"role": "user", "content": "Who repairs the roof?"}])
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Extractive answer (no LLM configured):"


def test_a_long_conversation_is_trimmed_to_the_token_budget_and_says_so(client, encoder, monkeypatch):
    turn = "We talked about the weather and many other things for a long while today."
    per_turn = chat.token_counter(encoder)([turn])[0]
    monkeypatch.setattr(chat, "HISTORY_TOKEN_BUDGET", 10 * per_turn)
    history = [{"role": ("user", "assistant")[i % 2], "content": turn} for i in range(400)]
    completion = client.chat.completions.create(
        model="default", messages=[*history, {"role": "user", "content": "Who repairs the roof?"}])
    assert completion.model_extra["trimmed_messages"] == 390
    assert "The tenant repairs the roof." in completion.choices[0].message.content


def test_the_default_budget_trims_a_conversation_that_is_too_long(client):
    history = [{"role": ("user", "assistant")[i % 2], "content": "word " * 400} for i in range(50)]
    completion = client.chat.completions.create(model="default",
                                                messages=[*history, {"role": "user", "content": "the roof?"}])
    assert 0 < completion.model_extra["trimmed_messages"] < 50


# ------------------------------------------------------------------------------------------- chat, with an LLM
class ScriptedLLM(CustomLLM):
    """A LlamaIndex LLM that condenses to a fixed question and answers citing [1]; it records every prompt."""

    temperature: float = 0.1
    max_tokens: int | None = None
    prompts: list = Field(default_factory=list)
    fail_at: str | None = None

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted")

    def _reply(self, prompt: str) -> str:
        self.prompts.append((prompt, self.temperature, self.max_tokens))
        step = "condense" if "Standalone question:" in prompt else "answer"
        if self.fail_at == step:
            raise ConnectionError("upstream unreachable")
        return "Who repairs the roof of the leased building?" if step == "condense" else "The tenant does [1]."

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._reply(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        text = self._reply(prompt)
        words, so_far = text.split(" "), ""
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            so_far += delta
            yield CompletionResponse(text=so_far, delta=delta)


@pytest.fixture
def llm(monkeypatch):
    scripted = ScriptedLLM()
    monkeypatch.setattr(openai_routes, "chat_llm", lambda app: scripted)
    return scripted


CONVERSATION = [
    {"role": "user", "content": "Tell me about the lease."},
    {"role": "assistant", "content": "It covers repairs and the boiler."},
    {"role": "user", "content": "And who repairs the roof?"},
]


def test_with_an_llm_the_conversation_is_condensed_and_the_answer_cites_numbered_passages(client, llm):
    completion = client.chat.completions.create(model="default", messages=CONVERSATION, temperature=0.7, max_tokens=50)
    extra = completion.model_extra
    assert extra["mode"] == "llm" and extra["standalone_question"] == "Who repairs the roof of the leased building?"
    assert completion.choices[0].message.content == "The tenant does [1]."
    assert_sources_point_into_documents(extra["sources"])
    (condense, *_), (answer_prompt, temperature, max_tokens) = llm.prompts
    assert "Tell me about the lease." in condense and "And who repairs the roof?" in condense
    first = extra["sources"][0]
    assert f"[1] {first['doc_id']} (characters {first['start']}-{first['end']})" in answer_prompt
    assert "It covers repairs and the boiler." in answer_prompt  # the history goes to the answer too
    assert (temperature, max_tokens) == (0.7, 50)  # on a copy of the LLM ...
    assert (llm.temperature, llm.max_tokens) == (0.1, None)  # ... not the shared one


def test_with_an_llm_the_answer_streams(client, llm):
    chunks = list(client.chat.completions.create(model="default", messages=CONVERSATION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The tenant does [1]."
    assert chunks[-1].model_extra["mode"] == "llm" and chunks[-1].choices[0].finish_reason == "stop"


def test_trimmed_history_never_reaches_the_llm(client, llm, encoder, monkeypatch):
    history = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i} about the roof"} for i in range(20)]
    longest = max(chat.token_counter(encoder)([m["content"] for m in history]))
    monkeypatch.setattr(chat, "HISTORY_TOKEN_BUDGET", 3 * longest)
    completion = client.chat.completions.create(model="default",
                                                messages=[*history, {"role": "user", "content": "the roof?"}])
    trimmed = completion.model_extra["trimmed_messages"]
    condense = llm.prompts[0][0]
    assert 0 < trimmed <= 17 and "turn 0 " not in condense and f"turn {trimmed - 1} " not in condense
    assert f"turn {trimmed} " in condense and "turn 19 " in condense


def test_an_llm_failure_is_a_502_or_an_error_event_never_a_500(client, llm):
    llm.fail_at = "condense"
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="default", messages=CONVERSATION)
    assert failed.value.status_code == 502 and "upstream unreachable" in str(failed.value)
    llm.fail_at = "answer"
    with pytest.raises(openai.APIError, match="upstream unreachable"):
        list(client.chat.completions.create(model="default", messages=CONVERSATION[-1:], stream=True))


# ------------------------------------------------------------------------------------------- embeddings
def test_embeddings_single_and_batch_match_the_encoder(client, encoder):
    one = client.embeddings.create(model="default", input="The tenant repairs the roof.")  # the SDK asks for base64
    assert one.object == "list" and len(one.data) == 1 and one.usage.prompt_tokens > 0
    np.testing.assert_allclose(one.data[0].embedding, encoder.encode_documents(["The tenant repairs the roof."])[0],
                               atol=1e-5)
    texts = [f"query number {i} about the roof" for i in range(40)]  # more than one batcher batch (32)
    for batch in (texts[:3], texts):
        queries = client.embeddings.create(model="default", input=batch, encoding_format="float",
                                           extra_body={"input_type": "query"})
        assert [d.index for d in queries.data] == list(range(len(batch)))
        got = np.array([d.embedding for d in queries.data])
        np.testing.assert_allclose(got, encoder.encode_queries(batch), atol=1e-5)
        assert not np.allclose(got, encoder.encode_documents(batch), atol=1e-3)  # the query side, not the other


def test_models_list_the_arms(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default"] and models.data[0].owned_by == "deepseek-rag"
    assert models.data[0].model_extra["index_version"] == 2


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("body, field, words", [
    ({"messages": []}, "messages", "at least 1"),
    ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hi."}]}, "messages",
     "no user message"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages", "blank"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "messages.0.role", "'system', 'user', 'assistant' or 'tool'"),
    ({"messages": [{"role": "developer", "content": "hi"}, {"role": "user", "content": "x"}]}, "messages.0.role", "'tool'"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream", "boolean"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": 1}, "stream", "boolean"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n", "less than or equal to 1"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": []}, "tools", "Extra inputs"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages.0.content", ""),
    ({"messages": [{"role": "user", "content": "a \ud800 b"}]}, "messages.0.content", "lone surrogate"),
])
def test_bad_chat_requests_are_422_naming_the_field(http, body, field, words):
    response = http.post("/v1/chat/completions", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(e["field"].startswith(field) for e in detail["errors"]) and words in detail["message"]


@pytest.mark.parametrize("body, field, words", [
    ({"input": []}, "input", "empty list"),
    ({"input": ["roof"] * 10_000}, "input", "the limit is 2048"),
    ({"input": ["roof", " "]}, "input", "input[1] is blank"),
    ({"input": [1, 2, 3]}, "input", "valid string"),
    ({"input": "roof", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"input": "roof", "input_type": "passage"}, "input_type", "'query' or 'document'"),
    ({"input": "roof", "dimensions": 7}, "dimensions", "not this encoder's dimension"),
])
def test_bad_embedding_requests_are_422_naming_the_field(http, body, field, words):
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(e["field"].startswith(field) for e in detail["errors"]) and words in detail["message"]


def test_the_sdk_raises_on_a_bad_request(client):
    with pytest.raises(openai.UnprocessableEntityError, match="no user message"):
        client.chat.completions.create(model="default", messages=[{"role": "system", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError, match="2048"):
        client.embeddings.create(model="default", input=["x"] * 2049)


def test_keys_are_needed_as_for_every_read(server):
    with openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(openai.PermissionDeniedError):
            wrong.models.list()
    assert httpx.post(f"{server}/v1/embeddings", json={"input": "roof"}).status_code == 401


# ------------------------------------------------------------------------------------------- pieces
def test_history_is_kept_newest_first_within_the_budget():
    conversation = chat.Conversation("q?", [chat.Turn("user", "a " * n) for n in (5, 1, 2, 3)], [])
    kept = chat.trim_history(conversation, lambda texts: [len(t.split()) for t in texts], budget=5)
    assert [len(t.text.split()) for t in kept.history] == [2, 3] and kept.trimmed == 2


def test_extractive_citations_are_renumbered_to_the_source_that_holds_them():
    sources = [{"index": 1, "doc_id": "a:b", "start": 0, "end": 10}, {"index": 2, "doc_id": "c", "start": 5, "end": 50}]
    text = "One. [a:b:2-8] Two. [c:20-30] Three. [c:60-70]"
    assert chat.renumber_citations(text, sources) == "One. [1] Two. [2] Three. [c:60-70]"


# ------------------------------------------------------------------------------------------- /v1/context
def test_context_is_the_window_around_a_passage(http):
    text = TEXTS["lease.txt"]
    body = http.get("/v1/context/lease.txt", params={"start": 10, "end": 20, "chars": 5}).json()
    assert (body["window_start"], body["window_end"], body["text"]) == (5, 25, text[5:25])
    assert http.get("/v1/context/lease.txt", params={"start": 0, "end": len(text)}).json()["text"] == text
    assert http.get("/v1/context/missing.txt", params={"start": 0, "end": 1}).status_code == 404
    before = http.get("/v1/context/lease.txt", params={"start": 9, "end": 3})
    assert before.status_code == 422 and "end: 3 is before start" in before.json()["detail"]["message"]
    past = http.get("/v1/context/lease.txt", params={"start": 0, "end": 10_000})
    assert past.status_code == 422 and "past the end" in past.json()["detail"]["message"]


def test_the_inspector_page_is_served_with_a_strict_content_security_policy(server):
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert 'src="/inspector/inspector.js"' in page.text
    assert httpx.get(f"{server}/inspector/inspector.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server}/inspector/index.html").status_code == 404  # the two assets only


def test_the_readme_session_runs(server, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Inspector and OpenAI-compatible API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code.replace("http://localhost:8000/v1", f"{server}/v1").replace("READ-KEY", READ_KEY), "README", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Extractive answer") and "[1]" in printed[0]
    assert printed[1].split()[1] == "2" and printed[2].count("|") >= 2 and printed[3].endswith("['default']")
