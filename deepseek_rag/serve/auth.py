"""Bearer-token checks: writes need the API key; reads need the read key (or the API key) when one is set.

Keys are compared in constant time (``hmac.compare_digest``) and never logged. Without an API key, writes are
refused unless the server was started with ``--allow-unauthenticated-writes`` on a loopback address.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, {"message": "Authorization must be 'Bearer <key>'"}, {"WWW-Authenticate": "Bearer"})
    return token.strip()


def _matches(token: str, *keys: str | None) -> bool:
    return any(key is not None and hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def require_write(request: Request) -> None:
    """Dependency of every write route."""
    settings = request.app.state.settings
    token = _presented(request)
    if settings.api_key is None:
        if settings.allow_unauthenticated_writes:
            return
        raise HTTPException(403, {"message": "writes are disabled: start the server with --api-key KEY "
                                             "(or DEEPSEEK_RAG_API_KEY), or --allow-unauthenticated-writes on 127.0.0.1"})
    if token is None:
        raise HTTPException(401, {"message": "this write needs the API key: send Authorization: Bearer <key>"},
                            {"WWW-Authenticate": "Bearer"})
    if not _matches(token, settings.api_key):
        raise HTTPException(403, {"message": "the key is not the API key; writes need the API key"})


def require_read(request: Request) -> None:
    """Dependency of every read route."""
    settings = request.app.state.settings
    if settings.read_key is None:
        return
    token = _presented(request)
    if token is None:
        raise HTTPException(401, {"message": "reads need the read key: send Authorization: Bearer <key>"},
                            {"WWW-Authenticate": "Bearer"})
    if not _matches(token, settings.read_key, settings.api_key):
        raise HTTPException(403, {"message": "the key is neither the read key nor the API key"})
