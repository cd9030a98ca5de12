"""The inspector's routes: the page and its two assets, and ``GET /v1/context/{doc_id}`` (text around a passage).

The page and assets are read from package data once and served with a strict Content-Security-Policy (scripts
and styles from this origin only, no inline script, no plugins, no framing), so text that slipped into the DOM
as HTML still could not run. ``/v1/context`` is a read route like ``GET /v1/documents/{id}`` but returns only the
neighbour window of ``[start, end)``, so showing a hit in a long document does not ship the whole document.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ...errors import DocumentNotFoundError
from .. import model_arms
from ..auth import require_read
from ..schemas import ErrorOut

logger = logging.getLogger(__name__)
router = APIRouter()

ASSETS = {"inspector.js": "text/javascript; charset=utf-8", "inspector.css": "text/css; charset=utf-8"}
MAX_CONTEXT_CHARS = 5000
MAX_OFFSET = 2**31  # far past any document (their limit is 10 million characters)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=None)
def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


@router.get("/", include_in_schema=False)
async def inspector_page() -> Response:
    """The inspector page."""
    return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/inspector/{name}", include_in_schema=False)
async def inspector_asset(name: str) -> Response:
    """The page's script and stylesheet (nothing else is served from here)."""
    if name not in ASSETS:
        raise HTTPException(404, {"message": f"no inspector asset {name!r}; there are {sorted(ASSETS)}"})
    return Response(_static(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


class ContextOut(BaseModel):
    doc_id: str
    start: int
    end: int
    window_start: int
    window_end: int
    text: str
    index_version: int | None


@router.get("/v1/context/{doc_id:path}", response_model=ContextOut, tags=["documents"],
            dependencies=[Depends(require_read)],
            responses={**{s: {"model": ErrorOut, "description": d} for s, d in (
                (401, "A key is needed: send Authorization: Bearer <key>."), (403, "The key is wrong."),
                (413, "The request body is over the size limit."),
                (404, "No document with that id."), (422, "A parameter is invalid; the message names it."),
                (504, "No response within the time limit."))}})
async def passage_context(
    request: Request,
    doc_id: str = Path(min_length=1),
    start: int = Query(ge=0, le=MAX_OFFSET, description="The passage's first character."),
    end: int = Query(ge=0, le=MAX_OFFSET, description="One past the passage's last character."),
    chars: int = Query(default=300, ge=0, le=MAX_CONTEXT_CHARS, description="Characters shown on each side."),
    model: str | None = Query(default=None, max_length=200, description="The arm (any name while there is one)."),
) -> ContextOut:
    """``text[window_start:window_end]`` of a document: the passage ``[start, end)`` with ``chars`` on each side."""
    if end < start:
        raise HTTPException(422, {"message": f"invalid request: end: {end} is before start ({start})",
                                  "errors": [{"field": "end", "message": f"{end} is before start ({start})",
                                              "type": "value_error"}]})
    served = model_arms.select_served(request, model)
    low = max(0, start - chars)

    def read() -> tuple[str | None, int | None]:
        with served.handle.reading() as snapshot:
            if snapshot.locate(doc_id) is None:
                return None, snapshot.version
            return snapshot.document_span(doc_id, low, end + chars), snapshot.version

    text, version = await run_in_threadpool(read)
    if text is None:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index")
    if low + len(text) < end:
        message = f"{end} is past the end of document {doc_id!r} ({low + len(text)} characters or fewer)"
        raise HTTPException(422, {"message": f"invalid request: end: {message}",
                                  "errors": [{"field": "end", "message": message, "type": "value_error"}]})
    return ContextOut(doc_id=doc_id, start=start, end=end, window_start=low, window_end=low + len(text), text=text,
                      index_version=version)
