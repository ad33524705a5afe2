"""The tools that complete the workflows: what types exist, what a type needs, what a source holds."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from census_mcp.summaries.catalog import (
    SourceTypeDetail,
    SourceTypeList,
    TableList,
    source_type_detail,
    source_type_text,
    summarize_source_types,
    summarize_tables,
)
from census_mcp.summaries.text import DEFAULT_LIMIT
from census_mcp.tools.base import AppState, app_state, census, census_tool, page_request, tool_result
from census_mcp.tools.sources import Limit, Offset, Refresh, SourceId, SourceType


@census_tool(title="List source types", read_only=True, idempotent=True)
async def list_source_types(
    ctx: Context[AppState, Any], limit: Limit = 100, offset: Offset = 0, refresh: Refresh = False
) -> Annotated[CallToolResult, SourceTypeList]:
    """Source types a workspace can connect, and which create_source can create."""
    state = app_state(ctx)
    fetched = await census(ctx).list_source_types(refresh=refresh)
    text, result = summarize_source_types(fetched, request=page_request(state, offset=offset, limit=limit))
    return tool_result(text, result)


# `type`, as create_source and list_sources name it; `service_name` is what it was first called.
@census_tool(title="Get source type", read_only=True, idempotent=True, old_spellings={"service_name": "type"})
async def get_source_type(
    ctx: Context[AppState, Any], type: SourceType
) -> Annotated[CallToolResult, SourceTypeDetail]:
    """The credential fields create_source needs for a type: required, secret, allowed values, when each
    applies."""
    detail = source_type_detail(await census(ctx).get_source_type(type))
    return tool_result(source_type_text(detail), detail)


@census_tool(title="List source tables", read_only=True, idempotent=True)
async def list_source_tables(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    search: Annotated[str | None, Field(max_length=200, description="Substring of schema.table.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    refresh: Refresh = False,
) -> Annotated[CallToolResult, TableList]:
    """A source's warehouse tables: counts per schema, then one page of rows."""
    state = app_state(ctx)
    fetched = await census(ctx).list_tables(source_id, search=search, refresh=refresh)
    text, result = summarize_tables(
        fetched,
        source_id=source_id,
        search=search,
        request=page_request(state, offset=offset, limit=limit),
    )
    return tool_result(text, result)
