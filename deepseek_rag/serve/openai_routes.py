"""OpenAI-compatible routes: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.

A chat front-end or the OpenAI SDK pointed at ``http://host:port/v1`` gets grounded answers with ``[n]``
citations (the steps are in ``chat.py``) and the served encoder's vectors, in OpenAI's shapes; the arm comes
from ``model`` through :func:`model_arms.select_served`. Errors keep the service's shape (``{"detail": ...}``, 422
naming the field), which the SDK raises as ``UnprocessableEntityError`` with that body.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from . import chat, model_arms
from . import openai_schemas as oai
from .auth import require_read
from .schemas import ErrorOut

logger = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])

_READ: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "A key is needed: send Authorization: Bearer <key>."},
    403: {"model": ErrorOut, "description": "The key is wrong."},
    413: {"model": ErrorOut, "description": "The request body is over the size limit."},
    422: {"model": ErrorOut, "description": "A field is missing or invalid (or the model is not served); the message names it."},
    504: {"model": ErrorOut, "description": "No response within the time limit."},
}
_UPSTREAM = {502: {"model": ErrorOut, "description": "The configured LLM failed; the message says how."}}


def _request_id(response: Response) -> str:
    request_id = uuid.uuid4().hex
    response.headers["X-Request-Id"] = request_id
    return request_id


def chat_llm(app: Any) -> Any:
    """The LLM chat answers use (resolved once per app, as ``deepseek-rag ask`` finds it), or None: extractive."""
    if not hasattr(app.state, "chat_llm"):
        from ..generation import resolve_llm

        app.state.chat_llm = resolve_llm()
    return app.state.chat_llm


# ------------------------------------------------------------------------------------------- chat
@router.post("/v1/chat/completions", response_model=oai.ChatCompletion, dependencies=[Depends(require_read)],
             responses={**_READ, **_UPSTREAM, 200: {"content": {"text/event-stream": {}}, "description":
                        "A chat.completion, or with stream=true chat.completion.chunk events ending in data: [DONE]."}})
async def chat_completions(body: oai.ChatCompletionRequest, request: Request, response: Response) -> Any:
    """An answer to the conversation's last user message, grounded in retrieved passages cited as [n]."""
    started = time.perf_counter()
    served = model_arms.select_served(request, body.model, body.user)
    conversation = chat.split_conversation(body.messages)
    conversation = await run_in_threadpool(chat.trim_history, conversation, chat.token_counter(served.encoder),
                                           chat.HISTORY_TOKEN_BUDGET)
    try:
        prepared = await chat.prepare_answer(
            served, conversation, chat_llm(request.app), top_k=body.top_k, filters=body.filters,
            temperature=body.temperature, max_tokens=body.max_tokens, stream=body.stream,
        )
    except chat.UpstreamLLMError as exc:
        raise HTTPException(502, {"message": str(exc)}) from exc
    request_id = _request_id(response)
    request.app.state.experiment.record(request_id, served.name, (time.perf_counter() - started) * 1000)  # feedback
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
    extra = {"sources": prepared.sources, "mode": prepared.mode, "standalone_question": prepared.question,
             "trimmed_messages": conversation.trimmed, "index_version": prepared.version, "arm": served.name,
             "request_id": request_id}
    if not body.stream:
        try:
            text = "".join(await run_in_threadpool(lambda: list(prepared.deltas())))
        except chat.UpstreamLLMError as exc:
            raise HTTPException(502, {"message": str(exc)}) from exc
        finally:
            prepared.release()
        choice = oai.Choice(message=oai.AssistantMessage(content=text), finish_reason=prepared.finish_reason)
        return oai.ChatCompletion(**head, choices=[choice], usage=oai.Usage(**prepared.usage()), **extra)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        return _data({**head, "object": "chat.completion.chunk", "choices": choices, **more})

    async def events():
        try:
            yield chunk({"role": "assistant", "content": ""})
            async for piece in iterate_in_threadpool(prepared.deltas()):
                yield chunk({"content": piece})
            yield chunk({}, prepared.finish_reason, **extra)
            if include_usage:
                yield _data({**head, "object": "chat.completion.chunk", "choices": [], "usage": prepared.usage()})
        except Exception as exc:  # headers are sent: the SDK raises an APIError on an error event
            logger.warning("chat stream %s failed: %s", request_id, exc)
            kind = "upstream_error" if isinstance(exc, chat.UpstreamLLMError) else "server_error"
            yield _data({"error": {"message": str(exc), "type": kind, "request_id": request_id}})
        finally:  # also when the client hangs up mid-stream
            prepared.release()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"X-Request-Id": request_id, "Cache-Control": "no-cache"})


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# ------------------------------------------------------------------------------------------- embeddings
@router.post("/v1/embeddings", response_model=oai.EmbeddingList, responses=_READ, dependencies=[Depends(require_read)])
async def embeddings(body: oai.EmbeddingRequest, request: Request) -> oai.EmbeddingList:
    """Vectors from the served encoder: its document side by default, its query side with input_type="query"."""
    served = model_arms.select_served(request, body.model, body.user)
    encoder = served.encoder
    if body.dimensions is not None and body.dimensions != encoder.dim:
        message = f"{body.dimensions} is not this encoder's dimension ({encoder.dim}); leave it out or send {encoder.dim}"
        raise HTTPException(422, {"message": f"invalid request: dimensions: {message}",
                                  "errors": [{"field": "dimensions", "message": message, "type": "value_error"}]})
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if body.input_type == "query" and len(texts) <= served.batcher.max_batch:
        vectors = await served.encode(texts)  # joins the batcher's next forward pass with concurrent searches
    else:
        encode = encoder.encode_queries if body.input_type == "query" else encoder.encode_documents
        started = time.perf_counter()
        vectors = await run_in_threadpool(encode, texts)
        served.metrics.stage("encode", time.perf_counter() - started, served.name)
    tokens = await run_in_threadpool(_encoded_tokens, encoder, texts)
    data = [oai.Embedding(index=i, embedding=_encoded(vector, body.encoding_format)) for i, vector in enumerate(vectors)]
    return oai.EmbeddingList(data=data, model=body.model, usage=oai.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
                             input_type=body.input_type, arm=served.name)


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # what the OpenAI SDK asks for by default, and decodes as float32
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _encoded_tokens(encoder: Any, texts: list[str]) -> int:
    """Tokens the encoder read: each text truncated at its ``max_seq_length``, as encoding does."""
    ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)["input_ids"]
    return sum(len(i) for i in ids)


# ------------------------------------------------------------------------------------------- models
@router.get("/v1/models", response_model=oai.ModelList, responses=_READ, dependencies=[Depends(require_read)])
async def list_models(request: Request) -> oai.ModelList:
    """What ``model`` may be: each arm by name and, with several arms, ``deepseek-rag`` (routed by user)."""
    arms = model_arms.served_arms(request.app)
    cards = []
    for name in model_arms.model_names(request.app):
        served = arms.get(name) or arms[request.app.state.router.default]  # the routed name: the default's version
        created = int(served.path.stat().st_mtime) if served.path.exists() else 0
        cards.append(oai.ModelCard(id=name, created=created, index_version=served.handle.version))
    return oai.ModelList(data=cards)
