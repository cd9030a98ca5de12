"""A conversation in, a grounded answer out: trim the history, condense it to a question, retrieve, answer, cite.

What ``POST /v1/chat/completions`` does between parsing and the wire format (``openai_routes.py``):

1. **Split**: the last user message is the question; system messages join the system prompt; every other
   message is history.
2. **Trim**: the history, newest first, is kept while it fits :data:`HISTORY_TOKEN_BUDGET` tokens, counted with
   the served encoder's tokenizer; the oldest messages beyond it are left out and counted (``trimmed_messages``).
3. **With an LLM** (as ``deepseek-rag ask`` finds one: DeepSeek or an OpenAI-compatible server) — LlamaIndex's
   ``CondensePlusContextChatEngine`` logic: the history and the question are condensed to a standalone question
   with LlamaIndex's own condense prompt, passages are retrieved for it from one version, and the LLM answers the
   original question with the history and the numbered passages in its system prompt, citing them as ``[n]``.
4. **Without one**: the offline extractive answer to the question (no condensing: that needs an LLM), its
   ``[doc:start-end]`` citations renumbered ``[n]`` after the source they fall in.

It does not parse HTTP, choose an arm or change ``generation.py``; LlamaIndex is imported only on the LLM path.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

logger = logging.getLogger(__name__)

HISTORY_TOKEN_BUDGET = 3000
"""History tokens (served encoder's tokenizer) kept; system prompts and the question are always kept."""

CONTEXT_PROMPT = """You answer the user's questions from the numbered passages below, retrieved from a document index.
Use only these passages. Cite each statement with the number of the passage it comes from in square brackets,
like [1] or [2][3]. If the passages do not answer the question, say that you do not know.

{context}
"""
_COUNT_BLOCK = 32  # history messages tokenized at a time, newest first: a huge history is never tokenized whole
_EXTRACTIVE_CITATION = re.compile(r"\[([^\]]+):(\d+)-(\d+)\]")


class UpstreamLLMError(RuntimeError):
    """The configured LLM failed (unreachable, refused, timed out): the server's upstream, not the client, is at fault."""


@dataclass
class Turn:
    role: str
    text: str


@dataclass
class Conversation:
    """A request's messages split into what each step needs."""

    question: str
    history: list[Turn]
    system: list[str]
    trimmed: int = 0


def split_conversation(messages: Sequence[Any]) -> Conversation:
    """The last user message as the question, system texts apart, the other turns (in order) as history."""
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    system = [m.text for m in messages if m.role == "system" and m.text.strip()]
    history = [Turn(m.role, m.text) for i, m in enumerate(messages)
               if i != last_user and m.role != "system" and m.text.strip()]
    return Conversation(messages[last_user].text, history, system)


def token_counter(encoder: Any) -> Callable[[list[str]], list[int]]:
    """Token counts of texts with the served encoder's tokenizer (no truncation, no special tokens)."""

    def count(texts: list[str]) -> list[int]:
        return [len(encoder.token_ids(text)) for text in texts]  # shared tokenizer: no copy per worker thread

    return count


def trim_history(conversation: Conversation, count: Callable[[list[str]], list[int]],
                 budget: int = HISTORY_TOKEN_BUDGET) -> Conversation:
    """Keep the newest history turns whose tokens fit ``budget``; the count of those left out goes to ``trimmed``."""
    kept: list[Turn] = []
    used = 0
    history = conversation.history
    position = len(history)
    while position > 0:
        block = history[max(0, position - _COUNT_BLOCK):position]
        for turn, tokens in zip(reversed(block), reversed(count([t.text for t in block]))):
            if used + tokens > budget:
                conversation.trimmed = position
                conversation.history = kept[::-1]
                return conversation
            used += tokens
            kept.append(turn)
            position -= 1
    conversation.history = kept[::-1]
    return conversation


# ------------------------------------------------------------------------------------------- the answer
@dataclass
class ChatAnswer:
    """A prepared answer: iterate :meth:`deltas` (in a worker thread: it may call the LLM) for the text; then
    ``text`` and ``finish_reason`` are final. ``release()`` frees the pinned version; call it once, always."""

    question: str
    mode: str
    sources: list[dict[str, Any]]
    version: int | None
    pieces: Iterator[str] = field(default_factory=lambda: iter(()))
    release: Callable[[], None] = lambda: None
    prompt_texts: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    count: Callable[[list[str]], list[int]] | None = None
    on_done: Callable[[float], None] = lambda seconds: None
    text: str = ""
    finish_reason: str = "stop"

    def deltas(self) -> Iterator[str]:
        started = time.perf_counter()
        used = 0
        try:
            for piece in self.pieces:
                if self.mode == "extractive":
                    piece = renumber_citations(piece, self.sources)
                    if self.max_tokens is not None and self.count is not None:
                        used += self.count([piece])[0]
                        if used > self.max_tokens:  # cut at a sentence: the extractive answer is whole sentences
                            self.finish_reason = "length"
                            break
                self.text += piece
                yield piece
        finally:
            self.on_done(time.perf_counter() - started)

    def usage(self) -> dict[str, int]:
        """Tokens counted with the served encoder's tokenizer (an estimate of the LLM's own count)."""
        count = self.count or (lambda texts: [len(t.split()) for t in texts])
        prompt = sum(count(self.prompt_texts)) if self.prompt_texts else 0
        completion = count([self.text])[0] if self.text else 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def renumber_citations(text: str, sources: list[dict[str, Any]]) -> str:
    """``[doc:start-end]`` → ``[n]``, n being the first source of that document whose range holds the span."""

    def number(match: re.Match) -> str:
        doc_id, start, end = match.group(1), int(match.group(2)), int(match.group(3))
        for source in sources:
            if source["doc_id"] == doc_id and source["start"] < end and start < source["end"]:
                return f"[{source['index']}]"
        return match.group(0)

    return _EXTRACTIVE_CITATION.sub(number, text)


async def prepare_answer(served: Any, conversation: Conversation, llm: Any, *, top_k: int, filters: dict | None,
                         temperature: float | None, max_tokens: int | None, stream: bool) -> ChatAnswer:
    """Condense (with an LLM), retrieve and set up the answer's text; nothing is generated until iterated."""
    count = token_counter(served.encoder)
    record = lambda seconds: served.metrics.stage("generate", seconds, served.name)  # noqa: E731
    if llm is None:
        result, version, release = await served.answer(conversation.question, top_k=top_k, filters=filters, stream=True)
        sources = _numbered(result.sources)
        return ChatAnswer(conversation.question, result.mode, sources, version, result.text_stream or iter([result.text]),
                          release, prompt_texts=[conversation.question], max_tokens=max_tokens, count=count)
    started = time.perf_counter()
    question = await run_in_threadpool(condense_question, llm, conversation)
    record(time.perf_counter() - started)
    results, version = await served.retrieve([question], top_k=top_k, level="chunk", filters=filters, mode=None)
    sources = _numbered(results[0])
    messages = llm_messages(conversation, sources)
    answering = _with_options(llm, temperature, max_tokens)
    prepared = ChatAnswer(question, "llm", sources, version, prompt_texts=[m.content for m in messages], count=count,
                          on_done=record)
    prepared.pieces = (_stream_llm if stream else _chat_llm)(answering, messages, prepared)
    return prepared


def _numbered(passages: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"index": n, "doc_id": p.doc_id, "start": p.start, "end": p.end, "score": float(p.score), "text": p.text}
            for n, p in enumerate(passages, 1)]


# ------------------------------------------------------------------------------------------- the LLM path
def condense_question(llm: Any, conversation: Conversation) -> str:
    """The standalone question, as ``CondensePlusContextChatEngine._condense_question`` writes it."""
    if not conversation.history:
        return conversation.question
    from llama_index.core.base.llms.generic_utils import messages_to_history_str
    from llama_index.core.chat_engine.condense_plus_context import DEFAULT_CONDENSE_PROMPT_TEMPLATE

    history = messages_to_history_str(_llama_messages(conversation.history))
    prompt = DEFAULT_CONDENSE_PROMPT_TEMPLATE.format(chat_history=history, question=conversation.question)
    try:
        condensed = str(llm.complete(prompt)).strip()
    except Exception as exc:
        raise UpstreamLLMError(f"the LLM failed while condensing the conversation: {exc}") from exc
    return condensed or conversation.question


def llm_messages(conversation: Conversation, sources: list[dict[str, Any]]) -> list[Any]:
    """System prompt with the numbered passages (and the client's system messages), the history, the question."""
    from llama_index.core.llms import ChatMessage, MessageRole

    context = "\n\n".join(f"[{s['index']}] {s['doc_id']} (characters {s['start']}-{s['end']})\n{s['text']}"
                          for s in sources) or "(no passage was found)"
    system = "\n\n".join([CONTEXT_PROMPT.format(context=context), *conversation.system])
    return [ChatMessage(role=MessageRole.SYSTEM, content=system), *_llama_messages(conversation.history),
            ChatMessage(role=MessageRole.USER, content=conversation.question)]


def _llama_messages(turns: list[Turn]) -> list[Any]:
    from llama_index.core.llms import ChatMessage, MessageRole

    # A tool turn without its assistant tool call would be refused upstream: it goes in as text the user gave.
    roles = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT, "tool": MessageRole.USER}
    return [ChatMessage(role=roles[t.role], content=t.text if t.role != "tool" else f"Tool output:\n{t.text}")
            for t in turns]


def _with_options(llm: Any, temperature: float | None, max_tokens: int | None) -> Any:
    """A copy of the LLM with the request's temperature and max_tokens, for the LLMs that have those fields."""
    fields = getattr(type(llm), "model_fields", {})
    update = {name: value for name, value in (("temperature", temperature), ("max_tokens", max_tokens))
              if value is not None and name in fields}
    return llm.model_copy(update=update) if update else llm


def _chat_llm(llm: Any, messages: list[Any], into: ChatAnswer) -> Iterator[str]:
    try:
        response = llm.chat(messages)
    except Exception as exc:
        raise UpstreamLLMError(f"the LLM failed while answering: {exc}") from exc
    into.finish_reason = _finish_reason(response.raw)
    yield response.message.content or ""


def _stream_llm(llm: Any, messages: list[Any], into: ChatAnswer) -> Iterator[str]:
    last = None
    try:
        for last in llm.stream_chat(messages):
            if last.delta:
                yield last.delta
    except Exception as exc:
        raise UpstreamLLMError(f"the LLM failed while answering: {exc}") from exc
    into.finish_reason = _finish_reason(getattr(last, "raw", None))


def _finish_reason(raw: Any) -> str:
    """"length" when the upstream says it cut the answer at max_tokens (OpenAI-shaped raw responses), else "stop"."""
    choices = raw.get("choices") if isinstance(raw, dict) else getattr(raw, "choices", None)
    if not choices:
        return "stop"
    first = choices[0]
    reason = first.get("finish_reason") if isinstance(first, dict) else getattr(first, "finish_reason", None)
    return "length" if reason == "length" else "stop"
