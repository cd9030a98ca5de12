"""The retrieval inspector: a page at ``/`` that shows what retrieval returned, highlighted in its source text.

Plain HTML, CSS and JavaScript shipped as package data (``static/``): no build step, no CDN, works offline. The
page only calls the public API (``/v1/retrieve``, ``/v1/ask``, ``/v1/documents``, ``/v1/context``, ``/v1/index``),
inserts every document text with ``textContent`` (never as HTML) and is served under a Content-Security-Policy
that allows no inline script.
"""

from __future__ import annotations

from .routes import router

__all__ = ["router"]
