"""Small helpers the tests share."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult

from census_mcp.census.retry import RetryPolicy
from census_mcp.logs import configure_logging
from census_mcp.server import result_text
from census_mcp.settings import Settings


async def no_wait(_: float) -> None:
    """Retries without their backoff, so that failing calls stay fast."""


NO_BACKOFF = RetryPolicy(sleep=no_wait)
"""The server's own retry policy (its attempts and budget), without the waits between attempts."""


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    result = await client.call_tool(tool, arguments or {})
    assert isinstance(result, CallToolResult)
    return result


async def call_ok(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    result = await call(client, tool, arguments)
    assert not result.is_error, result_text(result)
    return result


async def call_error(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> str:
    """Call a tool that must fail; return its error text."""
    result = await call(client, tool, arguments)
    assert result.is_error, result_text(result)
    assert result.structured_content is None
    return result_text(result)


def wire_bytes(result: CallToolResult) -> int:
    """What a result costs: text content plus structuredContent as compact JSON."""
    structured = json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
    return len(result_text(result).encode()) + len(structured.encode())


def everything_shown(result: CallToolResult) -> str:
    """All a model sees of a result, as one string, for leak checks."""
    return result_text(result) + json.dumps(result.structured_content)


@contextmanager
def server_logging(settings: Settings) -> Iterator[None]:
    """Logging as the server sets it up for `settings` (to the stderr of the moment), put back as it
    was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(settings)
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def said_by(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """The messages one logger wrote while caplog listened."""
    return [record.getMessage() for record in caplog.records if record.name == logger]
