"""Answers with their sources: retrieve, then generate with an LLM, or answer extractively when none is set up.

The LLM is chosen as a user would expect (first match wins):

1. ``llm=`` — any LlamaIndex LLM object;
2. ``base_url=`` or ``$DEEPSEEK_RAG_LLM_BASE_URL`` — an OpenAI-compatible server (vLLM, Ollama, llama.cpp)
   through ``OpenAILike``; model from ``model_name=``/``$DEEPSEEK_RAG_LLM_MODEL``, key from
   ``$DEEPSEEK_RAG_LLM_API_KEY`` (local servers need none);
3. ``api_key=`` or ``$DEEPSEEK_API_KEY`` — DeepSeek's API (``deepseek-chat`` unless a model name is given);
4. none of these — an offline extractive answer: the sentences of the top chunks closest to the question
   (scored with the index's own encoder), each cited as ``[doc_id:start-end]``, labelled as extractive.

The LLM path retrieves with our ``Retriever`` (so a served, pinned version can answer) and writes the answer
with LlamaIndex's response synthesizer (what ``RetrieverQueryEngine`` uses); it needs the ``[llm]`` extra, and
LlamaIndex is imported only there. The servers of 2. and 3. are reached through ``llm_client.py``:
``timeout=`` (``$DEEPSEEK_RAG_LLM_TIMEOUT``, default 60 s) bounds every wait, only failures that cannot have
produced an answer are retried, and a failure, a timeout or a body that is not an answer (or an empty answer)
is an :class:`~deepseek_rag.errors.LLMError` naming the server. The extractive path needs only the core.
This module does not index, chunk or train.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, LLMError, MissingDependencyError
from .llm_client import DEFAULT_TIMEOUT, ENV_TIMEOUT, http_client, llm_error

logger = logging.getLogger(__name__)

DEEPSEEK_MODEL = "deepseek-chat"
DEEPSEEK_API_BASE = "https://api.deepseek.com"
ENV_DEEPSEEK_API_KEY = "DEEPSEEK_API_KEY"
ENV_BASE_URL = "DEEPSEEK_RAG_LLM_BASE_URL"
ENV_MODEL = "DEEPSEEK_RAG_LLM_MODEL"
ENV_API_KEY = "DEEPSEEK_RAG_LLM_API_KEY"
EXTRACTIVE_LABEL = "Extractive answer (no LLM configured):"
EXTRACTIVE_SENTENCES = 3
_CONTEXT_CHARS = 300  # text read around a chunk to complete the sentences it cuts
_SENTENCE_END = re.compile(r"[.?!]+[\"')\]’”]*(?=\s|$)|[。！？；…]+[”’」』）]*|\n[ \t]*\n")
_HEADING_LINE = re.compile(r"^[ \t]{0,3}#{1,6}[ \t][^\n]*$", re.MULTILINE)


@dataclass
class Source:
    """A retrieved passage an answer rests on: ``text == document.text[start:end]``."""

    doc_id: str
    start: int
    end: int
    score: float
    text: str

    @property
    def citation(self) -> str:
        return f"[{self.doc_id}:{self.start}-{self.end}]"


@dataclass
class Answer:
    """An answer, the passages it was drawn from, and how it was made (``"llm"`` or ``"extractive"``).

    With ``stream=True``, iterate ``text_stream`` for the text as it is generated; ``text`` grows with it and
    is complete once the stream is exhausted.
    """

    text: str
    sources: list[Source]
    mode: str
    text_stream: Iterator[str] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.text, "mode": self.mode, "sources": [asdict(s) for s in self.sources]}

    def format_sources(self) -> str:
        """A numbered list of the sources with their character ranges and scores."""
        if not self.sources:
            return "Sources: none found"
        lines = [f"  {i}. {s.doc_id}:{s.start}-{s.end}  score={s.score:.3f}" for i, s in enumerate(self.sources, 1)]
        return "\n".join(["Sources:", *lines])

    def format(self) -> str:
        """The text followed by the numbered source list, as ``deepseek-rag ask`` prints it."""
        return f"{self.text}\n\n{self.format_sources()}"


# ---------------------------------------------------------------------------------------------- choosing an LLM
def resolve_llm(
    llm: Any = None, *, base_url: str | None = None, model_name: str | None = None, api_key: str | None = None,
    timeout: float | None = None,
) -> Any | None:
    """The LLM :func:`answer` would use (see the module docstring for the order), or None for extractive.

    ``timeout``: seconds to wait for the server (connecting, and each wait for the next bytes of the answer);
    default ``$DEEPSEEK_RAG_LLM_TIMEOUT`` or 60.
    """
    if llm is not None:
        return llm
    base_url = base_url or os.environ.get(ENV_BASE_URL) or None
    model_name = model_name or os.environ.get(ENV_MODEL) or None
    if base_url:
        if not model_name:
            raise InvalidInputError(
                f"an OpenAI-compatible server at {base_url} needs a model name: set {ENV_MODEL} or pass "
                "model_name= / --model-name (the name the server serves, e.g. 'deepseek-r1:7b' on Ollama)"
            )
        openai_like = _import_llm("llama_index.llms.openai_like", "OpenAILike", "llama-index-llms-openai-like")
        key = api_key or os.environ.get(ENV_API_KEY) or "not-needed"  # local servers ignore the key
        # Retries are the client's (llm_client.py): LlamaIndex's and openai's would also retry timeouts.
        seconds = llm_timeout(timeout)
        return openai_like(model=model_name, api_base=base_url, api_key=key, is_chat_model=True, timeout=seconds,
                           max_retries=0, http_client=http_client(base_url, seconds))
    key = api_key or os.environ.get(ENV_DEEPSEEK_API_KEY)
    if key:
        deepseek = _import_llm("llama_index.llms.deepseek", "DeepSeek", "llama-index-llms-deepseek")
        seconds = llm_timeout(timeout)
        return deepseek(model=model_name or DEEPSEEK_MODEL, api_key=key, timeout=seconds, max_retries=0,
                        http_client=http_client(DEEPSEEK_API_BASE, seconds))
    return None


def llm_timeout(timeout: float | str | None = None) -> float:
    """``timeout``, else ``$DEEPSEEK_RAG_LLM_TIMEOUT``, else 60 s — checked to be a positive number of seconds."""
    given = timeout if timeout is not None else os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT
    try:
        seconds = float(given)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(given, bool) or not (math.isfinite(seconds) and seconds > 0):
        where = "timeout" if timeout is not None else f"${ENV_TIMEOUT}"
        raise InvalidInputError(f"{where}={given!r} must be a positive number of seconds (default {DEFAULT_TIMEOUT:g})")
    return seconds


def _import_llm(module: str, name: str, distribution: str) -> Any:
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{name} needs {distribution}: pip install 'deepseek-rag[llm]' (or pip install {distribution})"
        ) from exc


# ---------------------------------------------------------------------------------------------- answering
def answer(
    index_or_retriever: Any,
    question: str,
    *,
    llm: Any = None,
    top_k: int = 5,
    stream: bool = False,
    base_url: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    filters: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> Answer:
    """Answer ``question`` from an index (a ``DocumentIndex``, its folder, a ``Retriever`` or the LlamaIndex
    ``DeepSeekRAGRetriever``), citing the ``top_k`` passages retrieved.

    >>> result = answer("contracts.idx", "Who may terminate the agreement?")
    >>> print(result.format())
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError(f"question {question!r} is empty; ask something")
    retriever = core_retriever(index_or_retriever)
    chosen = resolve_llm(llm, base_url=base_url, model_name=model_name, api_key=api_key, timeout=timeout)
    if chosen is None:
        return extractive_answer(retriever, question, top_k=top_k, filters=filters, stream=stream)
    return _llm_answer(retriever, question, chosen, top_k=top_k, filters=filters, stream=stream)


def core_retriever(index_or_retriever: Any) -> Any:
    """The ``deepseek_rag.Retriever`` behind any of the objects :func:`answer` accepts."""
    from .document_index import DocumentIndex
    from .retrieval.retriever import Retriever

    obj = index_or_retriever
    if isinstance(obj, Retriever):
        return obj
    if isinstance(obj, DocumentIndex):
        return obj.as_retriever()
    if isinstance(obj, (str, os.PathLike)):
        return DocumentIndex.load(Path(obj)).as_retriever()
    if isinstance(getattr(obj, "core_retriever", None), Retriever):  # the LlamaIndex adapter
        return obj.core_retriever
    raise TypeError(
        f"expected a DocumentIndex, an index folder, a Retriever or a DeepSeekRAGRetriever, got {type(obj).__name__}"
    )


def _llm_answer(retriever: Any, question: str, llm: Any, *, top_k: int, filters: Mapping[str, Any] | None,
                stream: bool) -> Answer:
    """Retrieve with our ``Retriever`` (so a served, pinned version answers), synthesize with LlamaIndex.

    The synthesizer is the one ``RetrieverQueryEngine.from_args`` would build (``compact`` mode, its prompts).
    """
    try:
        from llama_index.core import get_response_synthesizer
        from llama_index.core.schema import NodeWithScore, TextNode
    except ImportError as exc:
        raise MissingDependencyError("answering with an LLM needs LlamaIndex: pip install 'deepseek-rag[llm]'") from exc
    hits = retriever.retrieve(question, top_k, filters=filters)
    nodes = [NodeWithScore(node=TextNode(id_=f"{h.doc_id}::{h.ordinal}", text=h.text, start_char_idx=h.start, end_char_idx=h.end,
                                         metadata={**h.metadata, "doc_id": h.doc_id, **({"section": h.section} if h.section else {})}),
                           score=h.score) for h in hits]
    server = _server_of(llm)
    try:
        response = get_response_synthesizer(llm=llm, streaming=stream).synthesize(question, nodes=nodes)
    except Exception as exc:
        _raise_llm_error(exc, server, llm)
    sources = [
        Source(n.node.metadata["doc_id"], n.node.start_char_idx, n.node.end_char_idx, float(n.score or 0.0), n.node.text)
        for n in response.source_nodes
    ]
    if not stream:
        text = str(response.response or "")
        if not text.strip():
            raise LLMError(f"the LLM at {server} returned an empty answer; check the server's log and the model name")
        return Answer(text, sources, "llm")
    result = Answer("", sources, "llm")
    result.text_stream = _accumulate(result, response.response_gen, server, llm)
    return result


def _accumulate(result: Answer, deltas: Iterator[str], server: str, llm: Any) -> Iterator[str]:
    """The streamed text, added to ``result`` as it comes; a failure on the way is an :class:`LLMError` (never
    retried: part of the answer has been shown)."""
    try:
        for delta in deltas:
            result.text += delta
            yield delta
    except Exception as exc:
        if result.text:
            note = f" (after {len(result.text)} streamed characters: the answer is incomplete)"
            _raise_llm_error(exc, server, llm, note=note)
        _raise_llm_error(exc, server, llm)
    if not result.text.strip():
        raise LLMError(f"the LLM at {server} streamed an empty answer; check the server's log and the model name")


def _server_of(llm: Any) -> str:
    return str(getattr(llm, "api_base", None) or type(llm).__name__)


def _raise_llm_error(exc: Exception, server: str, llm: Any, note: str = "") -> None:
    error = llm_error(exc, server, getattr(llm, "timeout", None))
    if error is None:
        raise exc
    raise (LLMError(f"{error}{note}") if note else error) from None


# ---------------------------------------------------------------------------------------------- extractive
def extractive_answer(
    retriever: Any,
    question: str,
    *,
    top_k: int = 5,
    sentences: int = EXTRACTIVE_SENTENCES,
    filters: Mapping[str, Any] | None = None,
    stream: bool = False,
) -> Answer:
    """The ``sentences`` sentences of the ``top_k`` retrieved chunks closest to ``question``, each cited.

    Sentences are scored by the index's own encoder (query side for the question, document side for the
    sentences), so the answer needs no LLM and no network.
    """
    hits = retriever.retrieve(question, top_k, filters=filters)
    sources = [Source(h.doc_id, h.start, h.end, h.score, h.text) for h in hits]
    with retriever.index.reading() as view:
        candidates = _candidate_sentences(view, hits)
    if not candidates:
        text = f"{EXTRACTIVE_LABEL} no passage in the index matches the question."
        pieces = [text]
    else:
        encoder = retriever.index.encoder
        query_vector = encoder.encode_queries([question])[0]
        scores = encoder.encode_documents([c[3] for c in candidates]) @ query_vector
        best = np.argsort(-scores, kind="stable")[:sentences]
        pieces = [EXTRACTIVE_LABEL] + [
            f"{candidates[i][3]} [{candidates[i][0]}:{candidates[i][1]}-{candidates[i][2]}]" for i in best
        ]
        text = " ".join(pieces)
    result = Answer(text, sources, "extractive")
    if stream:
        result.text_stream = iter([p if i == 0 else " " + p for i, p in enumerate(pieces)])
    return result


def _candidate_sentences(view: Any, hits: list[Any]) -> list[tuple[str, int, int, str]]:
    """(doc_id, start, end, text) of every sentence touching a hit, whole, once each, in retrieval order.

    Chunks may begin or end inside a sentence (they snap to line breaks too), so each hit is read with some
    text around it and every sentence that overlaps the hit is taken in full.
    """
    seen: set[tuple[str, int]] = set()
    texts: set[str] = set()
    found = []
    for hit in hits:
        low = max(0, hit.start - _CONTEXT_CHARS)
        window = view.document_span(hit.doc_id, low, hit.end + _CONTEXT_CHARS)
        for s, e in sentence_spans(window):
            start, end = low + s, low + e
            if end <= hit.start or start >= hit.end:
                continue
            key, normalized = (hit.doc_id, start), " ".join(window[s:e].split())
            if key in seen or normalized in texts:
                continue
            seen.add(key)
            texts.add(normalized)
            found.append((hit.doc_id, start, end, normalized))
    return found


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text``, trimmed; Markdown heading lines are left out.

    A sentence ends at ``.?!`` before whitespace, at Chinese ``。！？；``, or at a blank line; a single line
    break is not an end (hard-wrapped paragraphs). A heading is a title, not an answer.
    """
    segments, position = [], 0
    for heading in _HEADING_LINE.finditer(text):
        segments.append((position, heading.start()))
        position = heading.end()
    segments.append((position, len(text)))
    spans = []
    for low, high in segments:
        start = low
        for match in _SENTENCE_END.finditer(text, low, high):
            spans.append((start, match.end()))
            start = match.end()
        spans.append((start, high))
    trimmed = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if any(ch.isalnum() for ch in text[s:e]):
            trimmed.append((s, e))
    return trimmed
