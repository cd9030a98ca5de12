"""Request and response bodies of the OpenAI-compatible routes (Chat Completions, Embeddings, Models).

The shapes follow OpenAI's API so that its SDKs and chat front-ends work unchanged; what we add (``sources``,
``index_version``, ``arm``, ``trimmed_messages``, ``standalone_question``; ``top_k``, ``filters`` and
``input_type`` in requests) is extra top-level fields that those clients ignore. Requests stay strict as in
``schemas.py``: an unknown field, a role that does not exist or a ``stream`` that is not a JSON boolean is 422
with the field named, so a typo never silently changes an answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, field_validator

from .schemas import MAX_QUERY_CHARS, Request

MAX_MESSAGES = 10_000
MAX_MESSAGE_CHARS = 1_000_000
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_CHARS = 100_000
_UNUSED = "Accepted because chat front-ends send it; not used."


def check_text(value: str, where: str) -> str:
    """``value`` unchanged, or ``ValueError`` when it cannot be encoded as UTF-8 (a lone surrogate such as
    ``"\\ud800"`` in the JSON), which the tokenizer would otherwise fail on."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} is not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


# ------------------------------------------------------------------------------------------- chat
class TextPart(Request):
    """One part of a message's content; only text parts are understood."""

    type: Literal["text"] = Field(description="Only 'text' parts are supported (no images or audio).")
    text: str


class ChatMessage(Request):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(default=None, description="Text, or a list of text parts.")
    name: str | None = Field(default=None, max_length=200)
    tool_call_id: str | None = Field(default=None, max_length=200, description="Accepted (tool turns) and ignored.")
    tool_calls: list[dict[str, Any]] | None = Field(default=None, description="Accepted (assistant turns) and ignored.")

    @property
    def text(self) -> str:
        """The content as one string (text parts joined with newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | list[TextPart] | None) -> str | list[TextPart] | None:
        texts = [value] if isinstance(value, str) else [p.text for p in value or []]
        if sum(len(t) for t in texts) > MAX_MESSAGE_CHARS:
            raise ValueError(f"a message is over the limit of {MAX_MESSAGE_CHARS:,} characters")
        for text in texts:
            check_text(text, "content")
        return value


class StreamOptions(Request):
    include_usage: StrictBool = Field(default=False, description="Send a last chunk with the usage and no choices.")


class ChatCompletionRequest(Request):
    model: str = Field(default="default", min_length=1, max_length=200,
                       description="The arm to answer from (GET /v1/models); any name while there is one arm.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES,
                                        description="The conversation; the last user message is the question.")
    stream: StrictBool = Field(default=False, description="Server-sent chat.completion.chunk events, then [DONE].")
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, description="Passed to the LLM (unused when extractive).")
    max_tokens: int | None = Field(default=None, ge=1, le=100_000,
                                   description="Longest answer: the LLM's tokens, or the served encoder's tokens for "
                                               "the extractive answer (cut at a sentence).")
    user: str | None = Field(default=None, max_length=200, description="The caller's id (A/B routing).")
    n: int = Field(default=1, ge=1, le=1, description="One choice only.")
    top_p: float | None = Field(default=None, ge=0, le=1, description=_UNUSED)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, description=_UNUSED)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, description=_UNUSED)
    seed: int | None = Field(default=None, description=_UNUSED)
    top_k: int = Field(default=5, ge=1, le=100, description="Passages retrieved for the answer (extra field).")
    filters: dict[str, Any] | None = Field(default=None, description="Metadata filter for retrieval (extra field).")

    @field_validator("messages")
    @classmethod
    def _has_a_question(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        if not users:
            raise ValueError("the conversation has no user message; the last user message is the question")
        last = messages[users[-1]].text
        if not last.strip():
            raise ValueError(f"messages[{users[-1]}] (the last user message) is blank; ask something")
        if len(last) > MAX_QUERY_CHARS:
            raise ValueError(f"messages[{users[-1]}] (the question) is {len(last):,} characters; "
                             f"the limit is {MAX_QUERY_CHARS:,}")
        return messages


class SourceRef(BaseModel):
    """A passage the answer cites as ``[index]``."""

    index: int = Field(description="n in the citation [n].")
    doc_id: str
    start: int
    end: int
    score: float
    text: str


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sources: list[SourceRef] = Field(description="The passages cited as [n] (extra field).")
    mode: str = Field(description="llm or extractive (extra field).")
    standalone_question: str = Field(description="What was retrieved for: the condensed question (extra field).")
    trimmed_messages: int = Field(description="Oldest history messages left out to fit the token budget (extra field).")
    index_version: int | None
    arm: str
    request_id: str


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed completion; the last one with a ``finish_reason`` also carries the
    sources, version and arm."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


# ------------------------------------------------------------------------------------------- embeddings
class EmbeddingRequest(Request):
    input: str | list[str] = Field(description=f"A text or up to {MAX_EMBEDDING_INPUTS} texts (not token ids).")
    model: str = Field(default="default", min_length=1, max_length=200)
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float lists, or base64 of little-endian float32 (what the OpenAI SDK asks for)."
    )
    dimensions: int | None = Field(default=None, ge=1, description="Must equal the encoder's dimension when given.")
    input_type: Literal["query", "document"] = Field(
        default="document", description="Which side of the dual encoder (extra field): queries or passages."
    )
    user: str | None = Field(default=None, max_length=200)

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input is an empty list; send at least one text")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"input has {len(texts):,} texts; the limit is {MAX_EMBEDDING_INPUTS} per request "
                             "(send several requests)")
        for i, text in enumerate(texts):
            where = "input" if isinstance(value, str) else f"input[{i}]"
            if not text.strip():
                raise ValueError(f"{where} is blank; every input needs some text")
            if len(text) > MAX_EMBEDDING_CHARS:
                raise ValueError(f"{where} is {len(text):,} characters; the limit is {MAX_EMBEDDING_CHARS:,}")
            check_text(text, where)
        return value


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    input_type: str = Field(description="The side encoded (extra field).")
    arm: str


# ------------------------------------------------------------------------------------------- models
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "deepseek-rag"
    index_version: int | None = Field(default=None, description="The arm's served version (extra field).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
