"""The HTTP side of answering with an OpenAI-compatible LLM: a time limit, safe retries, answers checked.

:func:`http_client` builds the ``httpx.Client`` that ``generation.py`` gives LlamaIndex's ``OpenAILike`` /
``DeepSeek`` (whose own retries are turned off). It

- retries only what cannot have produced an answer yet: a refused connection, and HTTP 429 / 500 / 502 / 503 /
  504 before any of the body is read (``Retry-After`` honoured, up to :data:`MAX_RETRY_WAIT` seconds). A timeout
  is never retried (a hanging server would hang again), and nothing is retried once a streamed answer has begun;
- refuses a ``200`` whose body is not a chat completion — an HTML page from a proxy, JSON without ``choices``,
  a "stream" that is not server-sent events — with an :class:`~deepseek_rag.errors.LLMError` that names the
  server and quotes what it sent, where LlamaIndex would answer "Empty Response" or fail with an ``IndexError``.

:func:`llm_error` turns what the openai / httpx stack raises into one :class:`LLMError` message. This module does
not build prompts or parse answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import LLMError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
ENV_TIMEOUT = "DEEPSEEK_RAG_LLM_TIMEOUT"
DEFAULT_RETRIES = 2
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_WAIT = 10.0
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")
_QUOTED = 160  # characters of an unexpected body quoted in the error


class CheckedClient(httpx.Client):
    """An ``httpx.Client`` for one LLM server: safe retries, and chat-completion answers checked (module docstring)."""

    def __init__(self, server: str, *, retries: int = DEFAULT_RETRIES, backoff: float = 0.5, **options: Any) -> None:
        super().__init__(**options)
        self.server = server
        self.retries = retries
        self.backoff = backoff

    def send(self, request: httpx.Request, *, stream: bool = False, **options: Any) -> httpx.Response:
        checked = request.method == "POST" and request.url.path.endswith("completions")
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = super().send(request, stream=True, **options)
            except httpx.ConnectError as exc:  # nothing reached the server: safe to send again
                if last:
                    raise
                self._wait(attempt, None, f"could not connect ({exc})")
                continue
            if response.status_code in RETRY_STATUSES and not last:
                response.close()
                self._wait(attempt, response.headers.get("retry-after"), f"answered HTTP {response.status_code}")
                continue
            break
        if checked and response.status_code == 200:
            if _wants_stream(request):
                self._check_event_stream(response)
            else:
                self._check_completion(response)
        if not stream:
            response.read()
        return response

    def _wait(self, attempt: int, retry_after: str | None, what: str) -> None:
        delay = self.backoff * 2**attempt
        if retry_after:
            try:
                delay = float(retry_after)
            except ValueError:  # an HTTP date: keep the backoff
                pass
        delay = min(max(delay, 0.0), MAX_RETRY_WAIT)
        logger.warning("the LLM at %s %s; retrying in %.1f s (%d of %d)", self.server, what, delay, attempt + 1,
                       self.retries)
        time.sleep(delay)

    def _check_completion(self, response: httpx.Response) -> None:
        body = response.read()
        try:
            data = json.loads(body)
        except ValueError:
            response.close()
            raise LLMError(
                f"the LLM at {self.server} answered HTTP 200 with a body that is not JSON "
                f"({_content_type(response)}: {_quote(body)}); check that this is the server's OpenAI-compatible "
                "address (it usually ends in /v1)"
            ) from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise LLMError(
                f"the LLM at {self.server} answered HTTP 200 with JSON that holds no answer "
                f"({'an empty choices list' if isinstance(choices, list) else 'no choices'}: {_quote(body)}); "
                "check the server's log and the model name"
            )

    def _check_event_stream(self, response: httpx.Response) -> None:
        """A streamed answer must be server-sent events; peek at its start and put the bytes back."""
        if "event-stream" in response.headers.get("content-type", ""):
            return
        pieces = iter(response.stream)
        head = b""
        for piece in pieces:
            head += piece
            if len(head.lstrip()) >= 8:
                break
        if head.lstrip().startswith(_SSE_FIELDS):
            response.stream = _Replayed(head, pieces, response.stream)
            return
        rest = b"".join(pieces)
        response.close()
        raise LLMError(
            f"the LLM at {self.server} answered a streamed request with something that is not an event stream "
            f"({_content_type(response)}: {_quote(head + rest)}); check that this is the server's OpenAI-compatible "
            "address (it usually ends in /v1)"
        )


class _Replayed(httpx.SyncByteStream):
    """A response body whose first bytes were read already: those, then the rest."""

    def __init__(self, head: bytes, rest: Iterator[bytes], original: Any) -> None:
        self._head, self._rest, self._original = head, rest, original

    def __iter__(self) -> Iterator[bytes]:
        if self._head:
            yield self._head
        yield from self._rest

    def close(self) -> None:
        self._original.close()


def _wants_stream(request: httpx.Request) -> bool:
    try:
        return bool(json.loads(request.content or b"{}").get("stream"))
    except (ValueError, AttributeError):
        return False


def _content_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "no Content-Type")


def _quote(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return repr(text[:_QUOTED] + ("..." if len(text) > _QUOTED else "")) if text else "an empty body"


def http_client(server: str, timeout: float, retries: int = DEFAULT_RETRIES) -> CheckedClient:
    """The client for one LLM server; ``timeout`` bounds connecting, and each wait for the next bytes."""
    return CheckedClient(server, retries=retries, timeout=httpx.Timeout(timeout))


def llm_error(exc: BaseException, server: str, timeout: float | None) -> LLMError | None:
    """The :class:`LLMError` to raise for ``exc``, raised while talking to ``server``; None if it is no such failure."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for link in chain:
        if isinstance(link, LLMError):
            return link
    names = {type(link).__name__ for link in chain}
    modules = {type(link).__module__.split(".")[0] for link in chain}
    limit = f"{timeout:g} s" if timeout else "the time limit"
    if names & {"APITimeoutError", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectTimeout", "TimeoutException"}:
        return LLMError(
            f"the LLM at {server} did not answer within {limit} (--timeout / ${ENV_TIMEOUT}); check that the server "
            "is running and the model loaded, or allow a slow model more time"
        )
    if not modules & {"openai", "httpx", "httpcore"}:
        return None
    if "APIConnectionError" in names or "ConnectError" in names:
        detail = next((str(link) for link in reversed(chain) if str(link)), type(exc).__name__)
        return LLMError(f"could not connect to the LLM at {server} ({detail}); check that the server is running "
                        "and the address is right")
    return LLMError(f"the LLM at {server} failed: {type(exc).__name__}: {exc}")
