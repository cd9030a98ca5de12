"""Which served index answers an OpenAI-style request: the one place that maps a ``model`` name to an A/B arm.

- ``model`` names an arm (``GET /v1/models`` lists them): that arm answers, as ``X-Arm`` would make it.
- ``model`` is :data:`ROUTED_MODEL` (``"deepseek-rag"``), or the server has one arm and ``model`` is anything
  (a client configured for ``gpt-4o`` still works): the experiment's router picks the arm — sticky by
  ``X-User-Id`` or the body's ``user``, ``X-Arm`` honoured — exactly as for ``/v1/retrieve``.
- Otherwise (several arms, a name that is none of them) it is a 422 that lists what ``model`` may be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from .routes import choose_served

if TYPE_CHECKING:
    from .service import ServedIndex

ARM_SCOPE_KEY = "deepseek_rag.arm"  # the metrics middleware labels the request with this arm
ROUTED_MODEL = "deepseek-rag"  # "let the experiment choose": sticky routing by user


def served_arms(app) -> dict[str, ServedIndex]:
    """The arms an app serves, by name."""
    return dict(app.state.arms)


def model_names(app) -> list[str]:
    """What ``model`` may be: the arms, and the routed name when there are several arms to choose from."""
    arms = list(served_arms(app))
    return arms if len(arms) == 1 else [ROUTED_MODEL, *arms]


def select_served(request: Request, model: str | None, user: str | None = None) -> ServedIndex:
    """The arm that answers ``model`` for ``user``; an unknown name among several arms is a 422 naming the model."""
    arms = served_arms(request.app)
    if model in arms:
        request.scope[ARM_SCOPE_KEY] = model
        return arms[model]
    if len(arms) == 1 or model in (None, ROUTED_MODEL):
        return choose_served(request, user)
    message = f"{model!r} is not served here; choose one of {model_names(request.app)} (GET /v1/models)"
    raise HTTPException(422, {"message": f"invalid request: model: {message}",
                              "errors": [{"field": "model", "message": message, "type": "unknown_model"}]})
