"""``create_app(settings)``: the FastAPI application over one index directory.

Nothing heavy happens at import or in ``create_app``: the index, the encoder, the batcher and the writer are
opened in the app's lifespan. Around every request: a body-size limit (413), a time limit to the first byte
(504), the in-flight gauge, request metrics by route template, and one log line (method, route, status, ms —
never a key). Errors are JSON ``{"detail": ...}`` naming the field or value at fault; a client mistake is never
a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import (
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexLockedError,
    InvalidInputError,
    ReadOnlyIndexError,
)
from .metrics import ServeMetrics
from .settings import ServeSettings

logger = logging.getLogger(__name__)
access_log = logging.getLogger("deepseek_rag.serve.access")

SETTINGS_ENV = "DEEPSEEK_RAG_SERVE_SETTINGS"


def create_app(settings: ServeSettings) -> FastAPI:
    """The service's ASGI app (serve it with uvicorn: ``deepseek-rag serve`` does)."""
    metrics = ServeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from .arms import ArmRouter, ArmSettings, ExperimentSettings
        from .experiments import Experiment
        from .service import ServedIndex

        experiment = settings.experiment
        if experiment is None:
            ensure_index(settings)
            experiment = ExperimentSettings(arms=[ArmSettings(name="default", index=settings.index, default=True)])
        arms: dict[str, ServedIndex] = {}
        try:
            for arm in experiment.arms:  # each arm opens its own index with the encoder its manifest names
                arms[arm.name] = await asyncio.to_thread(ServedIndex, settings, metrics, name=arm.name, path=Path(arm.index))
                await arms[arm.name].start()
        except BaseException:
            for served in arms.values():
                await served.stop()
            raise
        app.state.arms = arms
        app.state.router = ArmRouter(experiment)
        app.state.experiment_settings = experiment
        app.state.experiment = Experiment(list(arms), experiment.default_arm, min_effect=experiment.min_effect)
        app.state.ready = True
        metrics.ready.set(1)
        logger.info("serving %s on %s:%s", ", ".join(f"{n} ({s.path}, version {s.handle.version})" for n, s in arms.items()),
                    settings.host, settings.port)
        try:
            yield
        finally:
            app.state.ready = False
            metrics.ready.set(0)
            for served in arms.values():
                await served.stop()

    app = FastAPI(
        title="deepseek-rag", version=__version__, lifespan=lifespan,
        description="Chunked long-document retrieval over HTTP: hits with their document and character range.",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    app.add_middleware(LimitsMiddleware, settings=settings, metrics=metrics)
    _install_error_handlers(app)
    from .admin_routes import router as admin_router
    from .routes import router
    from .inspector import router as inspector_router
    from .openai_routes import router as openai_router

    app.include_router(openai_router)  # no path of these two overlaps another router's
    app.include_router(inspector_router)
    app.include_router(router)
    app.include_router(admin_router)
    return app


def create_app_from_env() -> FastAPI:
    """The app for uvicorn worker processes: settings come as JSON in ``$DEEPSEEK_RAG_SERVE_SETTINGS``."""
    return create_app(ServeSettings.from_dict(json.loads(os.environ[SETTINGS_ENV])))


def ensure_index(settings: ServeSettings) -> None:
    """Create an empty index at ``settings.index`` when nothing is there yet (an empty index can take upserts)."""
    from ..document_index import DocumentIndex
    from ..encoding.dual_encoder import DualEncoder
    from ..storage.layout import LOCK_NAME, detect_format

    folder = Path(settings.index)
    if folder.exists() and (not folder.is_dir() or any(p.name != LOCK_NAME for p in folder.iterdir())):
        return  # an index (or not one: opening it says so)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        DocumentIndex(DualEncoder(model=settings.model), lock_timeout=settings.lock_wait_s).save(folder)
    except InvalidInputError:
        if detect_format(folder) is None:
            raise
        return  # another worker process created it first
    logger.info("created an empty index at %s", folder)


# ------------------------------------------------------------------------------------------- errors
def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            if error.get("type") == "json_invalid":  # loc is ("body", character position)
                position = error.get("loc", ("body", "?"))[-1]
                problems.append({"field": "body", "message": f"not valid JSON (at character {position}): "
                                 f"{error.get('ctx', {}).get('error', 'JSON decode error')}", "type": "json_invalid"})
                continue
            where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
            problems.append({"field": where, "message": error.get("msg", "invalid"), "type": error.get("type")})
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return _error(422, {"message": f"invalid request: {summary}", "errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # bytes that are not UTF-8 text
            return _error(422, {"message": "invalid request: body: not valid JSON (send UTF-8 encoded JSON)",
                                "errors": [{"field": "body", "message": "not valid JSON", "type": "json_invalid"}]})
        detail = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
        return _error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(InvalidInputError)
    async def invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
        return _error(422, {"message": str(exc)})

    @app.exception_handler(DocumentNotFoundError)
    async def not_found(request: Request, exc: DocumentNotFoundError) -> JSONResponse:
        return _error(404, {"message": str(exc)})

    @app.exception_handler(IndexLockedError)
    async def locked(request: Request, exc: IndexLockedError) -> JSONResponse:
        return _error(503, {"message": str(exc)}, {"Retry-After": "1"})

    @app.exception_handler(ReadOnlyIndexError)
    async def read_only(request: Request, exc: ReadOnlyIndexError) -> JSONResponse:
        return _error(403, {"message": str(exc)})

    @app.exception_handler(EncoderMismatchError)
    async def mismatch(request: Request, exc: EncoderMismatchError) -> JSONResponse:
        return _error(409, {"message": str(exc)})


# ------------------------------------------------------------------------------------------- middleware
class LimitsMiddleware:
    """Body-size limit, time to first byte, in-flight gauge, request metrics and the access log (pure ASGI)."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: ServeMetrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "started": False, "received": 0}
        limit = self.settings.max_request_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reply(send, 413, f"request body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
            self._finish(scope, 413, started)
            return

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise _BodyTooLarge()
            return message

        async def tracked_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self._with_deadline(scope, limited_receive, tracked_send, state)
        except _BodyTooLarge:
            if not state["started"]:
                state["status"] = 413
                await self._reply(send, 413, f"request body is over the limit of {limit:,} bytes")
        finally:
            self.metrics.inflight.dec()
            self._finish(scope, state["status"], started)

    async def _with_deadline(self, scope: dict, receive: Any, send: Any, state: dict) -> None:
        """Run the app; a response that has not started within ``timeout_s`` is cancelled and answered 504.
        Once it has started (a stream of events), it may run on."""
        started = asyncio.Event()

        async def send_and_mark(message: dict) -> None:
            await send(message)
            if message["type"] == "http.response.start":
                started.set()

        task = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        marker = asyncio.ensure_future(started.wait())
        try:
            done, _ = await asyncio.wait({task, marker}, timeout=self.settings.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                state["status"] = 504
                await self._reply(send, 504, f"no response within {self.settings.timeout_s:g} s; try again or ask for less")
                return
            await task
        except asyncio.CancelledError:  # the client went away: stop the work for it
            task.cancel()
            raise
        finally:
            marker.cancel()

    @staticmethod
    async def _reply(send: Any, status: int, message: str) -> None:
        body = json.dumps({"detail": {"message": message}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: dict, status: int, started: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        arm = scope.get("deepseek_rag.arm", "default")
        seconds = time.perf_counter() - started
        self.metrics.requests.labels(route, str(status), arm).inc()
        self.metrics.request_seconds.labels(route, arm).observe(seconds)
        access_log.info("%s %s %d %.1fms", scope.get("method"), route, status, seconds * 1000)


class _BodyTooLarge(Exception):
    pass
