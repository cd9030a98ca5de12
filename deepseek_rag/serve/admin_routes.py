"""Experiment and admin routes: feedback, the online A/B report, reloading, weights and promotion.

Reading the report needs the read key (when set); changing weights, promoting and reloading need the API key.
A reload moves every arm to its newest published version; an arm whose new version cannot be opened (damaged,
or built with another encoder) is refused with the reason, and its current version keeps serving.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from . import schemas
from .auth import require_read, require_write
from .routes import _ERRORS, _READ

router = APIRouter()
logger = logging.getLogger(__name__)
_UNKNOWN = {404: {"model": schemas.ErrorOut, "description": "No such request id (or it is too old)."}}
_CONFLICT = {409: {"model": schemas.ErrorOut, "description": "An arm's new version could not be opened; it keeps serving."}}


def _arms_out(request: Request) -> schemas.ArmsOut:
    state = request.app.state
    return schemas.ArmsOut(default=state.router.default, weights=dict(state.router.weights),
                           versions={name: served.handle.version for name, served in state.arms.items()})


@router.post("/v1/feedback", response_model=schemas.FeedbackResponse, responses={**_READ, **_UNKNOWN},
             tags=["experiments"], dependencies=[Depends(require_read)])
async def feedback(body: schemas.FeedbackRequest, request: Request) -> Any:
    """A user's signal about an answer (click, helpful, unhelpful), counted for the arm that gave it."""
    arm = request.app.state.experiment.feedback(body.request_id, body.signal)
    if arm is None:
        return JSONResponse({"detail": {"message": f"request_id {body.request_id!r} is unknown (or older than the "
                                                   "last 200,000 requests); send the request_id of a response"}},
                            status_code=404)
    return schemas.FeedbackResponse(recorded=True, arm=arm)


@router.get("/v1/experiments", response_model=schemas.ExperimentReport, responses=_READ, tags=["experiments"],
            dependencies=[Depends(require_read)])
async def experiments(request: Request) -> schemas.ExperimentReport:
    """Per arm: requests, feedback rate, helpful share, p50/p99; each arm against the default with a 95% CI and a
    p-value (two-proportion z-test), and the rated requests per arm still needed for the configured effect."""
    state = request.app.state
    return schemas.ExperimentReport(**state.experiment.report(dict(state.router.weights)))


@router.put("/v1/admin/arms", response_model=schemas.ArmsOut, responses=_ERRORS, tags=["admin"],
            dependencies=[Depends(require_write)])
async def set_weights(body: schemas.WeightsRequest, request: Request) -> schemas.ArmsOut:
    """Change arms' weights (e.g. 10 → 50 → 100); sticky users of a growing arm stay on it."""
    request.app.state.router.set_weights(body.weights)
    logger.info("weights now %s", request.app.state.router.weights)
    return _arms_out(request)


@router.post("/v1/admin/promote", response_model=schemas.ArmsOut, responses=_ERRORS, tags=["admin"],
             dependencies=[Depends(require_write)])
async def promote(body: schemas.PromoteRequest, request: Request) -> schemas.ArmsOut:
    """Make an arm the default, with all traffic."""
    state = request.app.state
    state.router.promote(body.arm)
    state.experiment.default = body.arm
    logger.info("promoted %s", body.arm)
    arms = _arms_out(request)
    if state.settings.mlflow_model:
        from ..tracking import register_retriever

        arms.registered = await run_in_threadpool(register_retriever, state.arms[body.arm].path, state.settings.mlflow_model)
    return arms


@router.post("/v1/admin/reload", response_model=schemas.ArmsOut, responses={**_ERRORS, **_CONFLICT}, tags=["admin"],
             dependencies=[Depends(require_write)])
async def reload(request: Request) -> Any:
    """Move every arm to its newest published version now (the watcher does it within watch_s anyway)."""
    refused = {}
    for name, served in request.app.state.arms.items():
        try:
            await run_in_threadpool(served.handle.refresh)
            served.observe()
        except Exception as exc:  # refused: the arm keeps serving the version it has
            refused[name] = str(exc)
    if refused:
        return JSONResponse({"detail": {"message": "; ".join(f"arm {n!r} keeps version "
                                                              f"{request.app.state.arms[n].handle.version}: {why}"
                                                              for n, why in refused.items()),
                                        "refused": refused}}, status_code=409)
    return _arms_out(request)
