"""The HTTP service: ``create_app(settings)`` builds a FastAPI app over one index directory.

Nothing heavy is imported here; the app loads the index and the encoder when it starts (its lifespan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServeSettings", "create_app"]

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ServeSettings


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServeSettings":
        from .settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'deepseek_rag.serve' has no attribute {name!r}")
