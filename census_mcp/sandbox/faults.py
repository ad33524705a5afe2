"""Fault injection for the sandbox: the transient failures a Census client must retry or report.

Faults are drawn per request from a seeded RNG, so a fault-injection test replays the same faults
for the same request order. Some faults answer in place of the API (as a proxy in front of Census
would); the others let the API do its work and then spoil the answer, so a client learns that a
failed write may still have happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_KINDS = ("429", "500", "502", "503", "html", "slow", "drop", "truncated", "malformed")
BEFORE_API_FAULTS = frozenset({"429", "500", "502", "503", "html"})
"""The faults answered before the request reaches the API, so the workspace is left unchanged."""

_HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
_HTML_504 = (
    "<html><head><title>504 Gateway Time-out</title></head>"
    "<body><center><h1>504 Gateway Time-out</h1></center></body></html>"
)
_MALFORMED_BODY = b'{"status": "success", "data": <<<not json'
_UVICORN_NOT_COMPLETED = "ASGI callable returned without completing response."


@dataclass(frozen=True)
class FaultConfig:
    """Which API requests (under /api/v1 or /api/v2) fail, and how; the default injects nothing."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    methods: tuple[str, ...] = ("GET", "POST", "PATCH", "DELETE")
    seed: int = 0
    retry_after: str = "0"
    slow_seconds: float = 5.0

    def __post_init__(self) -> None:
        unknown = [kind for kind in self.kinds if kind not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}; got {list(self.kinds)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1; got {self.rate}")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must not be negative; got {self.slow_seconds}")
        # Scope methods are upper case; normalising here keeps ("post",) from silently matching nothing.
        object.__setattr__(self, "methods", tuple(method.upper() for method in self.methods))


NO_FAULTS = FaultConfig()


class FaultInjector:
    """The faults of one FaultConfig, drawn from an RNG of its own so that a run can be replayed."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 - replayable test faults, not cryptography

    def draw(self, method: str) -> str | None:
        """The fault for the next API request, or None; draws nothing for methods that are not faulted."""
        if method in self.config.methods and self._rng.random() < self.config.rate:
            return self._rng.choice(self.config.kinds)
        return None

    def response(self, kind: str) -> Response:
        """The answer for a fault in BEFORE_API_FAULTS, as the proxy or the overloaded API would send it."""
        if kind == "429":
            retry_after = {"Retry-After": self.config.retry_after} if self.config.retry_after else None
            return JSONResponse({"status": 429, "message": "Too many requests"}, 429, headers=retry_after)
        if kind == "500":
            return JSONResponse({"status": "error", "message": "Internal server error"}, 500)
        if kind == "502":
            return HTMLResponse(_HTML_502, 502)
        if kind == "503":
            return JSONResponse({"status": 503}, 503)
        if kind == "html":
            return HTMLResponse(_HTML_504, 504)
        raise ValueError(f"{kind!r} is not answered before the API")

    def spoil(self, kind: str, app: ASGIApp) -> ASGIApp:
        """Wrap `app` so that it runs in full (changing the workspace) and then its answer is spoilt."""

        async def spoilt(scope: Scope, receive: Receive, send: Send) -> None:
            messages: list[Message] = []

            async def keep(message: Message) -> None:
                messages.append(message)

            await app(scope, receive, keep)
            start = messages[0]
            body = b"".join(message.get("body", b"") for message in messages[1:])
            if kind == "slow":
                await _wait_or_hang_up(receive, self.config.slow_seconds)
            elif kind == "drop":
                await _drop(start, body, send)
                return
            elif kind == "truncated":
                body = body[: len(body) // 2]
            elif kind == "malformed":
                body = _MALFORMED_BODY
            else:
                raise ValueError(f"{kind!r} does not spoil an answer")
            MutableHeaders(scope=start)["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        return spoilt


async def _wait_or_hang_up(receive: Receive, seconds: float) -> None:
    """Hold the answer for `seconds`, but not past the client hanging up, so shutdown does not wait."""

    async def hang_up() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(hang_up(), seconds)


_dropping: ContextVar[bool] = ContextVar("sandbox_dropping", default=False)


class _QuietDrops(logging.Filter):
    """Hide uvicorn's complaint about an unfinished answer when the sandbox dropped it on purpose.

    uvicorn logs it in the request's own task, right after the app returns, so the context variable set
    by `_drop` is still visible; unfinished answers from anything else are still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_dropping.get() and record.msg == _UVICORN_NOT_COMPLETED)


_QUIET_DROPS = _QuietDrops()


async def _drop(start: Message, body: bytes, send: Send) -> None:
    """Send the real headers (with their Content-Length) and half the body, then return unfinished.

    An ASGI app cannot close its connection; uvicorn closes it when the app returns with the answer
    incomplete, so the client sees the connection end mid-body (a protocol error, not a status).
    """
    _dropping.set(True)
    logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)  # a no-op once added
    await send(start)
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
