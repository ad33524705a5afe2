"""The tools over a source's table-refresh jobs: start one, check on one."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from census_mcp.summaries.refresh import RefreshJobStatus, refresh_text
from census_mcp.tools.base import AppState, app_state, census_tool, tool_result
from census_mcp.tools.sources import SourceId

RefreshKey = Annotated[int, Field(ge=1, description="From refresh_source_tables.")]


@census_tool(title="Refresh source tables", read_only=False, idempotent=False)
async def refresh_source_tables(
    ctx: Context[AppState, Any], source_id: SourceId
) -> Annotated[CallToolResult, RefreshJobStatus]:
    """Start a job that re-reads a source's table list; returns a refresh_key for
    get_refresh_tables_status."""
    refresh_key = await app_state(ctx).census.refresh_tables(source_id)
    job = RefreshJobStatus(source_id=source_id, refresh_key=refresh_key, status="processing")
    return tool_result(refresh_text(job, started=True), job)


@census_tool(title="Get refresh tables status", read_only=True, idempotent=True)
async def get_refresh_tables_status(
    ctx: Context[AppState, Any], source_id: SourceId, refresh_key: RefreshKey
) -> Annotated[CallToolResult, RefreshJobStatus]:
    """Whether a refresh_source_tables job is processing or completed."""
    status = await app_state(ctx).census.refresh_tables_status(source_id, refresh_key)
    job = RefreshJobStatus(source_id=source_id, refresh_key=refresh_key, status=status)
    return tool_result(refresh_text(job, started=False), job)
