"""The tools over /sources: list, get, create, update, delete.

Each is thin: arguments arrive validated by their schema, the client does the
HTTP, summaries shape the result. Failures are explained in tools/errors.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from mcp.server.elicitation import CancelledElicitation, DeclinedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult
from pydantic import BaseModel, BeforeValidator, Field

from census_mcp.census.client import CensusClient
from census_mcp.census.errors import CensusError, CensusUnknownOutcomeError
from census_mcp.census.models import Source
from census_mcp.summaries.sources import (
    DeletedSource,
    SortColumn,
    SourceDetail,
    SourceFilter,
    SourceList,
    describe_source,
    sort_sources,
    summarize_source_list,
)
from census_mcp.summaries.text import DEFAULT_LIMIT
from census_mcp.tools.base import (
    AppState,
    OutcomeUnknown,
    app_state,
    census,
    census_tool,
    page_request,
    tool_result,
)
from census_mcp.untrusted import quote


def reject_bool(value: Any) -> Any:
    """JSON true would otherwise pass as the integer 1, and act on source #1."""
    if isinstance(value, bool):
        raise ValueError("must be an integer, not true or false")
    return value


NotBool = BeforeValidator(reject_bool)  # last in each Annotated, so the bounds stay in the schema
# Census ids are 64-bit: a larger number would only travel to Census in a URL and come back a 404.
MAX_ID = 2**63 - 1
SourceId = Annotated[int, Field(ge=1, le=MAX_ID, description="From list_sources."), NotBool]


def lower_case(value: Any) -> Any:
    """Source types are lower-case names; "Snowflake" means snowflake."""
    return value.lower() if isinstance(value, str) else value


SourceType = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",  # any case: "Snowflake" means snowflake
        description="Source type, e.g. snowflake (list_source_types has all).",
    ),
    BeforeValidator(lower_case),
]
Credentials = Annotated[
    dict[str, Any],
    Field(
        min_length=1,
        max_length=100,
        description="Fields as get_source_type lists them. Never shown back.",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Items per page."), NotBool]
Offset = Annotated[int, Field(ge=0, description="A result's next_offset."), NotBool]
Refresh = Annotated[bool, Field(description="Skip the list cache.")]
OptionalLabel = Annotated[str | None, Field(min_length=1, max_length=255, description="Display label.")]
# Compared locally and sent in a JSON body, never in a path: a length bound is all it needs.
GroupId = Annotated[str, Field(max_length=100)]
OptionalReadOnly = Annotated[
    bool | None,
    Field(description="true: Census never writes to the warehouse."),
]


TypeFilter = Annotated[SourceType | None, Field(description="Source type, e.g. snowflake.")]
NameContains = Annotated[
    str | None, Field(max_length=200, description="Case-insensitive substring of name or label.")
]
TestStatus = Annotated[
    Literal["passed", "failed", "untested"] | None,
    Field(description="Outcome of the last connection test."),
]
GroupFilter = Annotated[GroupId | None, Field(description="Exact group id (API v2 only).")]


@census_tool(title="List sources", read_only=True, idempotent=True)
async def list_sources(
    ctx: Context[AppState, Any],
    type: TypeFilter = None,
    name_contains: NameContains = None,
    test_status: TestStatus = None,
    group_id: GroupFilter = None,
    order: Annotated[Literal["desc", "asc"], Field(description="desc: newest first.")] = "desc",
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    refresh: Refresh = False,
) -> Annotated[CallToolResult, SourceList]:
    """The workspace's sources, filtered, with totals and counts by type and test status over all
    matches, then one page of rows. One call answers e.g. "which snowflake sources failed their test"."""
    selection = SourceFilter(
        type=type, name_contains=name_contains, test_status=test_status, group_id=group_id
    )

    def arrange(matching: list[Source]) -> list[Source]:
        return matching if order == "desc" else matching[::-1]  # Census lists newest first

    return await _source_page(ctx, selection, arrange, limit=limit, offset=offset, refresh=refresh)


@census_tool(title="List sources sorted", read_only=True, idempotent=True, app_only=True)
async def list_sources_sorted(
    ctx: Context[AppState, Any],
    sort_by: Annotated[SortColumn, Field(description="The column all matches are sorted by.")],
    type: TypeFilter = None,
    name_contains: NameContains = None,
    test_status: TestStatus = None,
    group_id: GroupFilter = None,
    order: Annotated[
        Literal["asc", "desc"], Field(description="asc: A-Z, failed first, oldest test first.")
    ] = "asc",
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
    refresh: Refresh = False,
) -> Annotated[CallToolResult, SourceList]:
    """For the sources app's column sort: list_sources with every match sorted before paging."""
    selection = SourceFilter(
        type=type, name_contains=name_contains, test_status=test_status, group_id=group_id
    )

    def arrange(matching: list[Source]) -> list[Source]:
        return sort_sources(matching, sort_by, descending=order == "desc")

    return await _source_page(ctx, selection, arrange, limit=limit, offset=offset, refresh=refresh)


async def _source_page(
    ctx: Context[AppState, Any],
    selection: SourceFilter,
    arrange: Callable[[list[Source]], list[Source]],
    *,
    limit: int,
    offset: int,
    refresh: bool,
) -> CallToolResult:
    """Every source of the workspace that `selection` matches, put in order by `arrange`, counted,
    then one page of them."""
    client = census(ctx)
    _groups_apply(client, selection.group_id)
    fetched = await client.list_sources(refresh=refresh)
    text, result = summarize_source_list(
        arrange([source for source in fetched.value.items if selection.matches(source)]),
        fetched=fetched,
        request=page_request(app_state(ctx), offset=offset, limit=limit),
        selection=selection,
        grouped=client.api.has_groups,
    )
    return tool_result(text, result)


def _groups_apply(client: CensusClient, group_id: str | None) -> None:
    if group_id is not None and not client.api.has_groups:
        raise ToolError(
            "group_id applies to Census API v2 only; this server uses API v1, whose sources have no "
            "group. Call again without group_id."
        )


@census_tool(title="Get source", read_only=True, idempotent=True)
async def get_source(
    ctx: Context[AppState, Any], source_id: SourceId
) -> Annotated[CallToolResult, SourceDetail]:
    """One source: connection details (secrets masked), last test, models and tables."""
    state = app_state(ctx)
    source = await census(ctx).get_source(source_id)
    return tool_result(*describe_source(source, "Source", state.settings.max_result_bytes))


@census_tool(title="Create source", read_only=False, idempotent=False)
async def create_source(
    ctx: Context[AppState, Any],
    type: SourceType,
    credentials: Credentials,
    label: OptionalLabel = None,
    read_only_connection: OptionalReadOnly = None,
    group_id: Annotated[GroupId | None, Field(description="API v2 group; default CENSUS_GROUP_ID.")] = None,
) -> Annotated[CallToolResult, SourceDetail]:
    """Connect a new warehouse source; returns it like get_source. get_source_type lists the credentials."""
    client = census(ctx)
    _groups_apply(client, group_id)
    group = await _group_to_create_in(client, group_id or app_state(ctx).settings.group_id)
    connection = _connection(credentials=credentials, label=label, read_only_connection=read_only_connection)
    existing = await _existing_source_ids(client)
    asked_at = datetime.now(UTC)
    headline = "Created source"
    try:
        created = await client.create_source({"type": type, **connection}, group_id=group)
    except CensusUnknownOutcomeError as exc:
        # Never send the create again: find out whether the lost one took effect.
        created = await _find_unconfirmed_create(
            client, exc, type=type, label=label, group_id=group, asked_at=asked_at, existing=existing
        )
        headline = "Census did not confirm the create, but it took effect: created source"
    if isinstance(created, Source):
        source = created
    else:
        try:
            source = await client.get_source(created)
        except CensusError as exc:
            # The create took effect: say so, or the model would create it again.
            source = Source(id=created, name=label or f"(new {type} source)", type=type, group_id=group)
            failed = f"Reading the new source back failed ({exc.message}); get_source shows it later."
            headline = f"{failed} Created source"
    return tool_result(*describe_source(source, headline, app_state(ctx).settings.max_result_bytes))


async def _group_to_create_in(client: CensusClient, group_id: str | None) -> str | None:
    """The group a create goes to: on API v2 one is needed, and the error names those the token sees."""
    if not client.api.has_groups or group_id is not None:
        return group_id if client.api.has_groups else None
    try:
        listing = (await client.list_sources()).value.items
        groups = sorted({source.group_id for source in listing if source.group_id is not None})
    except CensusError:
        groups = []
    seen = f" Groups with sources: {', '.join(quote(group, 64) for group in groups)}." if groups else ""
    raise ToolError(
        "On Census API v2 a source is created in a group: pass group_id, or set CENSUS_GROUP_ID for a "
        f"default.{seen} list_sources shows counts.by_group."
    )


async def _existing_source_ids(client: CensusClient) -> frozenset[int] | None:
    """The sources there before a create (from the list cache when fresh), so that a create whose
    answer is lost is never credited with one of them: a refused twin must not read as created.
    None when the list cannot be read; the create goes ahead, and creation time alone decides."""
    try:
        return frozenset(source.id for source in (await client.list_sources()).value.items)
    except CensusError:
        return None


# Census's clock and ours may differ; a source created this long before the call still counts.
_CLOCK_SKEW = timedelta(minutes=10)


async def _find_unconfirmed_create(
    client: CensusClient,
    lost: CensusUnknownOutcomeError,
    *,
    type: str,
    label: str | None,
    group_id: str | None,
    asked_at: datetime,
    existing: frozenset[int] | None,
) -> Source:
    """The source a create whose answer was lost made: one that was not there before, of its type,
    label and group, created since the call began."""
    lost_answer = f"The answer to the create was lost ({lost.message})"
    try:
        listing = (await client.list_sources(refresh=True)).value.items
    except CensusError as exc:
        raise OutcomeUnknown(
            f"{lost_answer}, and looking for the new source failed too ({exc.message}). Do not create it "
            f"again yet: call list_sources with type={type} and refresh=true first."
        ) from None
    candidates = [
        source
        for source in listing
        if source.type == type
        and (existing is None or source.id not in existing)
        and (label is None or label in (source.label, source.name))
        and (group_id is None or source.group_id == group_id)
        and _created_since(source, asked_at - _CLOCK_SKEW)
    ]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        found = ", ".join(f"#{source.id} {quote(source.name)}" for source in candidates)
        advice = f"New {type} sources that could be it: {found}. Check them with get_source; create nothing."
    else:
        labelled = f" labelled {quote(label)}" if label else ""
        advice = (
            f"No new {type} source{labelled} appears in list_sources yet. Check again with list_sources "
            "(refresh=true) in a minute before trying again, so as not to create it twice."
        )
    raise OutcomeUnknown(f"{lost_answer}, so it is unknown whether Census created it. {advice}")


def _created_since(source: Source, since: datetime) -> bool:
    try:
        created = datetime.fromisoformat(source.created_at or "")
    except ValueError:
        return False
    return (created if created.tzinfo else created.replace(tzinfo=UTC)) >= since


@census_tool(title="Update source", read_only=False, idempotent=True, destructive=True)
async def update_source(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    credentials: Annotated[
        dict[str, Any] | None,
        Field(max_length=100, description="Fields to change; others are kept."),
    ] = None,
    label: OptionalLabel = None,
    read_only_connection: OptionalReadOnly = None,
) -> Annotated[CallToolResult, SourceDetail]:
    """Change a source's credentials (partially), label or read-only setting."""
    connection = _connection(credentials=credentials, label=label, read_only_connection=read_only_connection)
    if not connection:
        raise ToolError("Nothing to update: pass at least one of credentials, label or read_only_connection.")
    state = app_state(ctx)
    source = await census(ctx).update_source(source_id, connection)
    return tool_result(*describe_source(source, "Updated source", state.settings.max_result_bytes))


def _connection(**fields: Any) -> dict[str, Any]:
    """The connection body: the fields given, without the ones left out (and no empty credentials)."""
    return {key: value for key, value in fields.items() if value not in (None, {})}


class DeleteConfirmation(BaseModel):
    confirm: bool = Field(description="Delete it")


async def _ask_the_human_to_delete(
    ctx: Context[AppState, Any], source_id: int, confirm_name: str
) -> Elicit[DeleteConfirmation] | None:
    """Where the client can ask its user, the user confirms the delete, not only the model.

    None (no question) where it cannot, or where the name does not match: the name guard
    then decides, and refuses with the real name.
    """
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` predates modes and means form support; url-only does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return None
    source = await census(ctx).get_source(source_id)
    if source.name != confirm_name:
        return None
    return Elicit(
        f"Delete the Census source #{source.id} {quote(source.name)} ({source.type})? "
        "This cannot be undone, and the syncs that use it will stop.",
        DeleteConfirmation,
    )


@census_tool(title="Delete source", read_only=False, idempotent=True, destructive=True)
async def delete_source(
    ctx: Context[AppState, Any],
    source_id: SourceId,
    confirm_name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=500,
            description="The source's exact current name, as confirmed by the user.",
        ),
    ],
    confirmation: Annotated[ElicitationResult[DeleteConfirmation], Resolve(_ask_the_human_to_delete)],
) -> Annotated[CallToolResult, DeletedSource]:
    """Delete a source permanently, breaking its syncs. Deletes only if confirm_name is its exact name."""
    if isinstance(confirmation, DeclinedElicitation | CancelledElicitation):
        answer = "declined" if isinstance(confirmation, DeclinedElicitation) else "cancelled"
        raise ToolError(f"Nothing was deleted: the user {answer} deleting source #{source_id}.")
    if confirmation.data is not None and not confirmation.data.confirm:
        raise ToolError(f"Nothing was deleted: the user did not confirm deleting source #{source_id}.")
    client = census(ctx)
    source = await client.get_source(source_id)
    if confirm_name != source.name:
        raise ToolError(
            f"Nothing was deleted: confirm_name does not match. Source #{source_id} is named "
            f"{quote(source.name, 500)}. Confirm with the user that this is the source to delete, "
            "then call delete_source again with that exact name."
        )
    await client.delete_source(source_id)
    result = DeletedSource(deleted=True, id=source_id, name=source.name)
    return tool_result(f"Deleted source #{source_id} {quote(source.name)}.", result)
