"""Which served index answers a request: the one place that maps an OpenAI ``model`` name to an A/B arm.

Today an app serves one index (``app.state.served``, arm ``"default"``), and any ``model`` name is accepted and
echoed back, so a client configured for ``gpt-4o`` still works. When an app holds several arms by name
(``app.state.arms``: ``{name: ServedIndex}``), ``model`` must name one of them; anything else is a 422 that
lists the names. Routes call :func:`select_served` rather than reading the arms off ``app.state``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

if TYPE_CHECKING:
    from .service import ServedIndex

ARM_SCOPE_KEY = "deepseek_rag.arm"  # the metrics middleware labels the request with this arm


def served_arms(app) -> dict[str, ServedIndex]:
    """The arms an app serves, by name (one today: the served index under its own name)."""
    arms = getattr(app.state, "arms", None)
    if arms:
        return dict(arms)
    served = app.state.served
    return {served.name: served}


def select_served(request: Request, model: str | None) -> ServedIndex:
    """The arm that answers ``model``: the only one when there is one (any name accepted), else the one so named.

    An unknown name is a 422 naming the model and the arms there are.
    """
    by_name = served_arms(request.app)
    if len(by_name) == 1:
        served = next(iter(by_name.values()))
    elif model in by_name:
        served = by_name[model]
    else:
        message = f"{model!r} is not served here; choose one of {sorted(by_name)} (GET /v1/models)"
        raise HTTPException(422, {"message": f"invalid request: model: {message}",
                                  "errors": [{"field": "model", "message": message, "type": "unknown_model"}]})
    request.scope[ARM_SCOPE_KEY] = served.name
    return served
