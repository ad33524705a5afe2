"""The tools over a source's table-refresh jobs: start one, check on one."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from census_mcp.summaries.refresh import RefreshJobStatus, refresh_text
from census_mcp.tools.base import AppState, census, census_tool, tool_result
from census_mcp.tools.sources import MAX_ID, NotBool, SourceId

RefreshKey = Annotated[int, Field(ge=1, le=MAX_ID, description="From refresh_source_tables."), NotBool]


# Under the 60 s after which common clients give up on a call.
MAX_WAIT_SECONDS = 50
_FIRST_POLL_SECONDS = 0.5
_MAX_POLL_SECONDS = 5.0


@census_tool(title="Refresh source tables", read_only=False, idempotent=False)
async def refresh_source_tables(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    wait: Annotated[bool, Field(description="Wait for completion, reporting progress.")] = False,
    timeout_seconds: Annotated[
        int, Field(ge=1, le=MAX_WAIT_SECONDS, description="How long to wait, with wait=true."), NotBool
    ] = 45,
) -> Annotated[CallToolResult, RefreshJobStatus]:
    """Start a job that re-reads a source's table list. Returns its refresh_key at once, or with
    wait=true once it completes or the timeout passes."""
    client = census(ctx)
    refresh_key = await client.refresh_tables(source_id)
    job = RefreshJobStatus(source_id=source_id, refresh_key=refresh_key, status="processing")
    if wait:
        job.status = await _wait_for(ctx, job, timeout_seconds)
    return tool_result(refresh_text(job, started=job.status == "processing", waited=wait), job)


async def _wait_for(ctx: Context[AppState, Any], job: RefreshJobStatus, timeout_seconds: float) -> str:
    """Poll the job with backoff until it completes or time is up, reporting progress as it goes.

    A cancelled call cancels this await, so polling stops with it.
    """
    client = census(ctx)
    started = time.monotonic()
    pause = _FIRST_POLL_SECONDS
    status = job.status
    while status == "processing":
        left = timeout_seconds - (time.monotonic() - started)
        if left <= 0:
            break
        await anyio.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_POLL_SECONDS)
        status = await client.refresh_tables_status(job.source_id, job.refresh_key)
        waited = min(time.monotonic() - started, timeout_seconds)
        await ctx.report_progress(
            waited, timeout_seconds, f"Table refresh of source #{job.source_id}: {status}"
        )
    return status


@census_tool(title="Get refresh tables status", read_only=True, idempotent=True)
async def get_refresh_tables_status(
    ctx: Context[AppState, Any], source_id: SourceId, refresh_key: RefreshKey
) -> Annotated[CallToolResult, RefreshJobStatus]:
    """Whether a refresh_source_tables job is processing or completed."""
    status = await census(ctx).refresh_tables_status(source_id, refresh_key)
    job = RefreshJobStatus(source_id=source_id, refresh_key=refresh_key, status=status)
    return tool_result(refresh_text(job, started=False), job)
