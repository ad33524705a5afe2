"""What every tool shares: the per-process state, the registration decorator, the result helper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from census_mcp.census.client import CensusClient
from census_mcp.settings import Settings
from census_mcp.summaries.text import PageRequest

ToolFunction = Callable[..., Awaitable[CallToolResult]]


class OutcomeUnknown(ToolError):
    """A write whose effect is unknown (Census's answer was lost and could not be found out)."""


@dataclass(frozen=True)
class AppState:
    """What the lifespan yields: one Census client per process, and the settings."""

    census: CensusClient
    settings: Settings

    def census_for(self, headers: Mapping[str, str] | None) -> CensusClient:
        """The server's own client; in passthrough mode, that client acting with the caller's token."""
        if not self.settings.passthrough:
            return self.census
        token = bearer_token((headers or {}).get("authorization", ""))
        if token is None:
            raise ToolError(
                "No Census token came with this request: send it as `Authorization: Bearer <token>`."
            )
        return self.census.with_token(token)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class ToolDefinition:
    """A tool function with the annotations that say what it does to the workspace."""

    fn: ToolFunction
    name: str
    title: str
    read_only: bool
    destructive: bool
    idempotent: bool
    old_spellings: Mapping[str, str] = field(default_factory=dict)
    """Argument names a client may still send (old name -> current name), accepted but not listed."""
    app_only: bool = False
    """Called by the sources app alone: never listed to the model (see census_mcp/app)."""

    @property
    def annotations(self) -> ToolAnnotations:
        """The hints, each given only where it differs from the MCP spec's default (read-only false,
        destructive true, idempotent false, open-world true: every tool talks to Census), since
        tools/list costs context on every turn. The spec gives destructive and idempotent hints
        meaning only for tools that write."""
        writes = not self.read_only
        return ToolAnnotations(
            title=self.title,
            read_only_hint=True if self.read_only else None,
            destructive_hint=False if writes and not self.destructive else None,
            idempotent_hint=True if writes and self.idempotent else None,
        )


def census_tool(
    *,
    title: str,
    read_only: bool,
    idempotent: bool,
    destructive: bool = False,
    old_spellings: Mapping[str, str] | None = None,
    app_only: bool = False,
) -> Callable[[ToolFunction], ToolDefinition]:
    """Declare a tool; its name is the function's, its description the docstring."""

    def define(fn: ToolFunction) -> ToolDefinition:
        return ToolDefinition(
            fn=fn,
            name=fn.__name__,
            title=title,
            read_only=read_only,
            destructive=destructive,
            idempotent=idempotent,
            old_spellings=old_spellings or {},
            app_only=app_only,
        )

    return define


def app_state(ctx: Context[AppState, Any]) -> AppState:
    state: AppState = ctx.request_context.lifespan_context
    return state


def census(ctx: Context[AppState, Any]) -> CensusClient:
    """The Census client for this call (see AppState.census_for)."""
    return app_state(ctx).census_for(ctx.headers)


def page_request(state: AppState, *, offset: int, limit: int) -> PageRequest:
    return PageRequest.within(offset=offset, limit=limit, cap_bytes=state.settings.max_result_bytes)


def tool_result(text: str, structured: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=structured.model_dump(mode="json"),
    )
