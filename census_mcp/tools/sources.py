"""The tools over /sources: list, get, create, update, delete.

Each is thin: arguments arrive validated by their schema, the client does the
HTTP, summaries shape the result. Failures are explained in tools/errors.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import Field, JsonValue

from census_mcp.census.models import Source
from census_mcp.summaries import (
    DEFAULT_LIMIT,
    MAX_RESULT_BYTES,
    DeletedSource,
    SourceDetail,
    SourceList,
    list_budget_bytes,
    quote,
    source_detail,
    source_text,
    summarize_source_list,
)
from census_mcp.tools.base import AppState, app_state, census_tool, tool_result

SourceId = Annotated[
    int, Field(ge=1, le=2**53, description="The source's numeric id (list_sources shows ids).")
]
SourceType = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="A source type's service name, e.g. snowflake, big_query, redshift, postgres.",
    ),
]
Credentials = Annotated[
    dict[str, JsonValue],
    Field(
        min_length=1,
        max_length=100,
        description=(
            "Connection credentials for the source type, e.g. for redshift: hostname, port, user, password, "
            "database. They are sent to Census only and never shown back."
        ),
    ),
]
OptionalLabel = Annotated[
    str | None, Field(min_length=1, max_length=255, description="A display label for the source.")
]
OptionalReadOnly = Annotated[
    bool | None,
    Field(description="true when Census must not write to the warehouse (no sync-state tracking)."),
]


@census_tool(title="List sources", read_only=True, idempotent=True)
async def list_sources(
    ctx: Context[AppState, Any],
    type: Annotated[
        SourceType | None, Field(description="Only sources of this exact type, e.g. snowflake.")
    ] = None,
    name_contains: Annotated[
        str | None,
        Field(min_length=1, max_length=200, description="Case-insensitive substring of the name or label."),
    ] = None,
    test_status: Annotated[
        Literal["passed", "failed", "untested"] | None,
        Field(description="Outcome of the last connection test; untested means never tested."),
    ] = None,
    order: Annotated[
        Literal["desc", "asc"], Field(description="desc: newest first (default); asc: oldest first.")
    ] = "desc",
    limit: Annotated[int, Field(ge=1, le=100, description="Sources to return, 1-100.")] = DEFAULT_LIMIT,
    offset: Annotated[int, Field(ge=0, le=1_000_000, description="Matches to skip, for paging.")] = 0,
) -> Annotated[CallToolResult, SourceList]:
    """List the workspace's data-warehouse sources, filtered and summarized.

    Reads every page from Census, then filters and counts across all of them, so one
    call answers questions such as "which snowflake sources failed their last test".
    Returns totals and counts by type and test status over all matches, plus one page
    of compact rows; next_offset gives the next page.
    """
    sources, workspace_total = await app_state(ctx).census.list_sources()
    if order == "asc":
        sources.reverse()
    matching = [s for s in sources if _matches(s, type, name_contains, test_status)]
    text, result = summarize_source_list(
        matching,
        workspace_total=workspace_total,
        offset=offset,
        limit=limit,
        filters=_describe_filters(type, name_contains, test_status),
        budget_bytes=list_budget_bytes(limit, MAX_RESULT_BYTES),
    )
    return tool_result(text, result)


def _matches(source: Source, type: str | None, name_contains: str | None, test_status: str | None) -> bool:
    if type is not None and source.type != type:
        return False
    if test_status is not None and source.test_status != test_status:
        return False
    if name_contains is not None:
        needle = name_contains.casefold()
        return needle in source.name.casefold() or needle in (source.label or "").casefold()
    return True


def _describe_filters(type: str | None, name_contains: str | None, test_status: str | None) -> str:
    parts = [
        f"type={type}" if type else "",
        f"name contains {quote(name_contains)}" if name_contains else "",
        f"last test {test_status}" if test_status else "",
    ]
    shown = ", ".join(part for part in parts if part)
    return f" ({shown})" if shown else ""


@census_tool(title="Get source", read_only=True, idempotent=True)
async def get_source(
    ctx: Context[AppState, Any], source_id: SourceId
) -> Annotated[CallToolResult, SourceDetail]:
    """Get one source: connection details (secrets masked), last test outcome, and its models and tables."""
    detail = source_detail(await app_state(ctx).census.get_source(source_id))
    return tool_result(source_text(detail), detail)


@census_tool(title="Create source", read_only=False, idempotent=False)
async def create_source(
    ctx: Context[AppState, Any],
    type: SourceType,
    credentials: Credentials,
    label: OptionalLabel = None,
    read_only_connection: OptionalReadOnly = None,
) -> Annotated[CallToolResult, SourceDetail]:
    """Connect a new data-warehouse source to the workspace and return it as get_source does.

    Census checks the credentials' fields for the type and says which are missing.
    """
    census = app_state(ctx).census
    connection = _connection(credentials=credentials, label=label, read_only_connection=read_only_connection)
    created = await census.create_source({"type": type, **connection})
    source = created if isinstance(created, Source) else await census.get_source(created)
    detail = source_detail(source)
    return tool_result(source_text(detail, headline="Created source"), detail)


@census_tool(title="Update source", read_only=False, idempotent=True, destructive=True)
async def update_source(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    credentials: Annotated[
        dict[str, JsonValue] | None,
        Field(max_length=100, description="Credential fields to change; fields not given are kept."),
    ] = None,
    label: OptionalLabel = None,
    read_only_connection: OptionalReadOnly = None,
) -> Annotated[CallToolResult, SourceDetail]:
    """Change a source's credentials (partially), label or read-only setting; returns the updated source."""
    connection = _connection(credentials=credentials, label=label, read_only_connection=read_only_connection)
    if not connection:
        raise ToolError("Nothing to update: pass at least one of credentials, label or read_only_connection.")
    detail = source_detail(await app_state(ctx).census.update_source(source_id, connection))
    return tool_result(source_text(detail, headline="Updated source"), detail)


def _connection(**fields: Any) -> dict[str, Any]:
    """The connection body: the fields given, without the ones left out (and no empty credentials)."""
    return {key: value for key, value in fields.items() if value not in (None, {})}


@census_tool(title="Delete source", read_only=False, idempotent=True, destructive=True)
async def delete_source(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    confirm_name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=500,
            description="The current name, exactly as the user confirmed it; guards against a wrong id.",
        ),
    ],
) -> Annotated[CallToolResult, DeletedSource]:
    """Delete a source permanently. Its syncs and models stop working.

    Only deletes when confirm_name equals the source's current name; otherwise
    nothing is deleted and the error gives the name to confirm with the user.
    """
    census = app_state(ctx).census
    source = await census.get_source(source_id)
    if confirm_name != source.name:
        raise ToolError(
            f"Nothing was deleted: confirm_name does not match. Source #{source_id} is named "
            f"{quote(source.name, 500)}. Confirm with the user that this is the source to delete, "
            "then call delete_source again with that exact name."
        )
    await census.delete_source(source_id)
    result = DeletedSource(deleted=True, id=source_id, name=source.name)
    return tool_result(f"Deleted source #{source_id} {quote(source.name)}.", result)
