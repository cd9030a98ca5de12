"""The HTTP routes: JSON in and out, every status code each one can return documented in the OpenAPI schema."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from ..documents import Document, Hit
from ..errors import DocumentNotFoundError
from . import schemas
from .auth import require_read, require_write

router = APIRouter()
logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorOut, "description": "A key is needed: send Authorization: Bearer <key>."},
    403: {"model": schemas.ErrorOut, "description": "The key is wrong, or writes are not allowed."},
    413: {"model": schemas.ErrorOut, "description": "The request body is over the size limit."},
    422: {"model": schemas.ErrorOut, "description": "A field is missing or invalid; the message names it."},
    504: {"model": schemas.ErrorOut, "description": "No response within the time limit."},
}
_READ = {k: v for k, v in _ERRORS.items()}
_WRITE = {**_ERRORS, 503: {"model": schemas.ErrorOut, "description": "Another writer holds the index; retry."}}
_NOT_FOUND = {404: {"model": schemas.ErrorOut, "description": "No document with that id."}}


def choose_served(request: Request, user: str | None = None) -> Any:
    """The arm that answers this request: ``X-Arm`` if given, else by ``X-User-Id`` (or the body's ``user``)."""
    state = request.app.state
    name = state.router.choose(request.headers.get("x-user-id") or user, request.headers.get("x-arm"))
    request.scope["deepseek_rag.arm"] = name  # the arm label of this request's metrics
    return state.arms[name]


def _remember(request: Request, request_id: str, served: Any, started: float) -> None:
    request.app.state.experiment.record(request_id, served.name, (time.perf_counter() - started) * 1000)


def _shadow(request: Request, queries: list[str], body: Any) -> None:
    """Send a copy of a retrieval to the shadow arm in the background: measured and logged, never returned."""
    state = request.app.state
    name = state.experiment_settings.shadow
    if name is None or name not in state.arms:
        return
    shadow = state.arms[name]

    async def run() -> None:
        ok = True
        try:
            results, version = await shadow.retrieve(queries, top_k=body.top_k, level=body.level, filters=body.filters,
                                                     mode=body.mode, focus_documents=body.focus_documents,
                                                     expand_neighbors=body.expand_neighbors,
                                                     window_tokens=body.window_tokens)
            logger.info("shadow %s (version %s): %s", name, version, [[h.doc_id for h in hits[:3]] for hits in results])
        except Exception as exc:  # the shadow's failure is counted, never the caller's problem
            ok = False
            logger.warning("shadow %s failed: %s", name, exc)
        state.experiment.record_shadow(name, ok)

    task = asyncio.get_running_loop().create_task(run())
    _SHADOW_TASKS.add(task)
    task.add_done_callback(_SHADOW_TASKS.discard)


_SHADOW_TASKS: set[asyncio.Task] = set()


def _request_id(response: Response) -> str:
    request_id = uuid.uuid4().hex
    response.headers["X-Request-Id"] = request_id
    return request_id


def _hit_out(hit: Hit) -> schemas.HitOut:
    return schemas.HitOut(doc_id=hit.doc_id, chunk_id=hit.chunk_id, score=hit.score, start=hit.start, end=hit.end,
                          text=hit.text, section=hit.section, ordinal=hit.ordinal, metadata=hit.metadata)


@router.post("/v1/retrieve", response_model=schemas.RetrieveResponse, responses=_READ, tags=["retrieval"],
             dependencies=[Depends(require_read)])
async def retrieve(body: schemas.RetrieveRequest, request: Request, response: Response) -> schemas.RetrieveResponse:
    """The best chunks (or documents) for a query, with their document, character range and score."""
    started = time.perf_counter()
    served = choose_served(request, body.user)
    results, version = await served.retrieve(
        [body.query], top_k=body.top_k, level=body.level, filters=body.filters, mode=body.mode,
        focus_documents=body.focus_documents, expand_neighbors=body.expand_neighbors, window_tokens=body.window_tokens,
    )
    _shadow(request, [body.query], body)
    request_id = _request_id(response)
    _remember(request, request_id, served, started)
    return schemas.RetrieveResponse(hits=[_hit_out(h) for h in results[0]], index_version=version, arm=served.name,
                                    request_id=request_id)


@router.post("/v1/retrieve/batch", response_model=schemas.RetrieveBatchResponse, responses=_READ, tags=["retrieval"],
             dependencies=[Depends(require_read)])
async def retrieve_batch(body: schemas.RetrieveBatchRequest, request: Request, response: Response) -> schemas.RetrieveBatchResponse:
    """:func:`retrieve` for up to 256 queries, all from one version."""
    started = time.perf_counter()
    served = choose_served(request, body.user)
    results, version = await served.retrieve(
        body.queries, top_k=body.top_k, level=body.level, filters=body.filters, mode=body.mode,
        focus_documents=body.focus_documents, expand_neighbors=body.expand_neighbors, window_tokens=body.window_tokens,
    )
    _shadow(request, body.queries, body)
    request_id = _request_id(response)
    _remember(request, request_id, served, started)
    return schemas.RetrieveBatchResponse(results=[[_hit_out(h) for h in hits] for hits in results], index_version=version,
                                         arm=served.name, request_id=request_id)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/v1/ask", response_model=schemas.AskResponse, tags=["answers"], dependencies=[Depends(require_read)],
             responses={**_READ, 200: {"content": {"text/event-stream": {}},
                                       "description": "JSON, or with stream=true server-sent events: token…, sources, done."}})
async def ask(body: schemas.AskRequest, request: Request, response: Response) -> Any:
    """An answer with its sources: from the configured LLM, or extractive (the best sentences) when there is none."""
    started = time.perf_counter()
    served = choose_served(request, body.user)
    result, version, release = await served.answer(body.question, top_k=body.top_k, filters=body.filters,
                                                   stream=body.stream)
    sources = [schemas.SourceOut(doc_id=s.doc_id, start=s.start, end=s.end, score=s.score, text=s.text).model_dump()
               for s in result.sources]
    request_id = _request_id(response)
    _remember(request, request_id, served, started)
    if not body.stream:
        release()
        return schemas.AskResponse(answer=result.text, mode=result.mode, sources=sources, index_version=version,
                                   arm=served.name, request_id=request_id)

    async def events():
        try:
            async for delta in iterate_in_threadpool(result.text_stream or iter([result.text])):
                yield _sse("token", {"text": delta})
            yield _sse("sources", {"sources": sources, "mode": result.mode, "index_version": version,
                                   "arm": served.name, "request_id": request_id})
            yield _sse("done", {})
        finally:  # also when the client hangs up mid-stream
            release()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"X-Request-Id": request_id, "Cache-Control": "no-cache"})


@router.post("/v1/documents", response_model=schemas.UpsertResponse, responses=_WRITE, tags=["documents"],
             dependencies=[Depends(require_write)])
async def upsert_documents(body: schemas.UpsertRequest, request: Request, response: Response) -> schemas.UpsertResponse:
    """Add documents, replacing any with the same id, in every arm; answered once each new version is published."""
    arms = request.app.state.arms
    limit = request.app.state.settings.max_documents_per_request
    if len(body.documents) > limit:
        return JSONResponse({"detail": {"message": f"documents: {len(body.documents)} in one request; the limit is "
                                                   f"{limit} (send several requests)"}}, status_code=422)
    documents = [Document(d.id, d.text, d.metadata) for d in body.documents]
    versions, chunks = {}, 0
    for name, served in arms.items():  # every arm indexes the same documents, each with its own encoder
        written, versions[name] = await served.writer.upsert(documents)
        chunks = chunks or written
        served.observe()
    default = request.app.state.router.default
    return schemas.UpsertResponse(upserted=len(documents), chunks=chunks, index_version=versions.get(default),
                                  versions=versions, request_id=_request_id(response))


@router.get("/v1/documents/{doc_id:path}", response_model=schemas.DocumentOut, responses={**_READ, **_NOT_FOUND},
            tags=["documents"], dependencies=[Depends(require_read)])
async def get_document(request: Request, doc_id: str = Path(min_length=1)) -> schemas.DocumentOut:
    """One document's text and metadata, from the current version."""
    document, version = choose_served(request).get_document(doc_id)
    if document is None:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index")
    return schemas.DocumentOut(id=document.id, text=document.text, metadata=document.metadata, index_version=version)


@router.delete("/v1/documents/{doc_id:path}", response_model=schemas.DeleteResponse, responses={**_WRITE, **_NOT_FOUND},
               tags=["documents"], dependencies=[Depends(require_write)])
async def delete_document(request: Request, response: Response, doc_id: str = Path(min_length=1)) -> schemas.DeleteResponse:
    """Remove a document from every arm; answered once each new version is published."""
    arms = request.app.state.arms
    if not any(served.handle.snapshot().has_document(doc_id) for served in arms.values()):
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index")
    versions, chunks = {}, 0
    for name, served in arms.items():
        if served.handle.snapshot().has_document(doc_id):
            removed, versions[name] = await served.writer.delete(doc_id)
            chunks = chunks or removed
            served.observe()
    default = request.app.state.router.default
    return schemas.DeleteResponse(deleted=doc_id, chunks=chunks, index_version=versions.get(default), versions=versions,
                                  request_id=_request_id(response))


@router.get("/v1/index", response_model=schemas.IndexInfo, responses=_READ, tags=["index"],
            dependencies=[Depends(require_read)])
async def index_info(request: Request) -> schemas.IndexInfo:
    """The served version of the arm (``X-Arm``, or the default): counts, segments, spec, encoder and settings."""
    served = choose_served(request)
    served.observe()
    snapshot = served.handle.snapshot()
    documents, chunks = snapshot.counts()
    return schemas.IndexInfo(version=snapshot.version, documents=documents, chunks=chunks, segments=len(snapshot.states),
                             index_spec=snapshot.spec, encoder=served.encoder.fingerprint(),
                             settings=served.handle.settings.to_dict())


@router.get("/healthz", response_model=schemas.Health, tags=["operations"])
async def healthz() -> schemas.Health:
    """The process is up."""
    return schemas.Health(status="ok")


@router.get("/readyz", response_model=schemas.Health, tags=["operations"],
            responses={503: {"model": schemas.Health, "description": "The index is not loaded (yet)."}})
async def readyz(request: Request) -> Any:
    """The index is loaded and searchable."""
    if not request.app.state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return schemas.Health(status="ready")


@router.get("/metrics", tags=["operations"], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics (names in ``deepseek_rag.serve.metrics.METRIC_NAMES``)."""
    if request.app.state.ready:
        for served in request.app.state.arms.values():
            served.observe()
    metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
