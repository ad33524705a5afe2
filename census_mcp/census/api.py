"""What differs between Census API versions, in one place.

Hosts, paths, request envelopes, field names, token kinds, and the answers that mean "this
operation does not exist on this version" or "this version is retired". The client reads them
from here; everything above the client is version-blind, apart from a source's group.

v1 is the published Sources API. v2 (Fivetran Activations) has no published Sources reference
yet: its entries are provisional, from Fivetran's migration page and Census's own Terraform
provider (NOTES.md, "API v2"). On the day the reference appears, correcting a path or a field
is a change to this file and to its sandbox twin, census_mcp/sandbox/versions.py.

Ids are integers on both versions: source ids and refresh keys (the provider reads v2 source
ids as integers). A v2 group id is a string such as "abundant_giraffe".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Literal

VersionName = Literal["v1", "v2"]
V1_RETIREMENT = date(2027, 1, 15)
WORKSPACE_TOKEN_PREFIX = "secret-token:"  # noqa: S105 - the documented shape of v1 tokens, not a token
_RETIREMENT_WORDS = re.compile(
    r"deprecat|retire|sunset|no longer (?:supported|available)|use (?:api )?v2", re.IGNORECASE
)


class Operation(StrEnum):
    LIST_SOURCES = "list_sources"
    GET_SOURCE = "get_source"
    CREATE_SOURCE = "create_source"
    UPDATE_SOURCE = "update_source"
    DELETE_SOURCE = "delete_source"
    REFRESH_TABLES = "refresh_tables"
    REFRESH_TABLES_STATUS = "refresh_tables_status"
    LIST_TABLES = "list_tables"
    LIST_SOURCE_TYPES = "list_source_types"
    GET_SOURCE_TYPE = "get_source_type"


@dataclass(frozen=True)
class Route:
    """One operation's method and path (relative to the base URL), and what it does, for messages."""

    method: str
    path: str
    does: str
    scope: Literal["source", "source_type"] | None = None
    """The object the path names, whose existence tells a missing route from a missing object."""
    keyed: bool = False
    """The request also names an object that cannot be looked up (a refresh job by its key): a 404
    for it, when the scope exists, is either that object missing or the route."""

    def path_for(self, **ids: Any) -> str:
        return self.path.format(**ids)


_SOURCE_ROUTES: Mapping[Operation, Route] = {
    Operation.LIST_SOURCES: Route("GET", "sources", "listing sources"),
    Operation.GET_SOURCE: Route("GET", "sources/{source_id}", "reading a source", "source"),
    Operation.CREATE_SOURCE: Route("POST", "sources", "creating a source"),
    Operation.UPDATE_SOURCE: Route("PATCH", "sources/{source_id}", "updating a source", "source"),
    Operation.DELETE_SOURCE: Route("DELETE", "sources/{source_id}", "deleting a source", "source"),
    Operation.REFRESH_TABLES: Route(
        "POST", "sources/{source_id}/refresh_tables", "refreshing a source's tables", "source"
    ),
    Operation.REFRESH_TABLES_STATUS: Route(
        "GET", "sources/{source_id}/refresh_tables_status", "checking a table refresh", "source", keyed=True
    ),
    Operation.LIST_TABLES: Route("GET", "sources/{source_id}/tables", "listing a source's tables", "source"),
    Operation.LIST_SOURCE_TYPES: Route("GET", "source_types", "listing source types"),
    Operation.GET_SOURCE_TYPE: Route(
        "GET", "source_types/{service_name}", "reading a source type", "source_type"
    ),
}


@dataclass(frozen=True)
class ApiVersion:
    name: VersionName
    hosts: Mapping[str, str]
    """Base URL per region."""
    routes: Mapping[Operation, Route]
    credential_kind: str
    credential_advice: str
    """Where to get the right kind of token."""
    group_field: str | None = None
    """The source field that names its group; None where sources have no group."""
    provisional: frozenset[Operation] = frozenset()
    """Operations not yet published for this version: a 404 on one may mean its route is missing."""
    missing_statuses: frozenset[int] = frozenset()
    """Statuses that mean the operation does not exist on this version."""
    retires_on: date | None = None

    @property
    def has_groups(self) -> bool:
        return self.group_field is not None

    def route(self, operation: Operation) -> Route:
        return self.routes[operation]

    def create_body(self, connection: Mapping[str, Any], group_id: str | None) -> dict[str, Any]:
        """POST /sources' body; on v2 the group goes inside the wrapped connection, as Fivetran's
        published v2 create of an activation does (provisional for sources)."""
        wrapped = dict(connection)
        if self.group_field is not None and group_id is not None:
            wrapped[self.group_field] = group_id
        return {"connection": wrapped}

    def says_retired(self, status: int, message: str) -> bool:
        """Whether an answer is Census saying this version is retired: 410 Gone, or a refusal that
        speaks of deprecation or retirement."""
        if self.retires_on is None:
            return False
        return status == 410 or (status in (401, 403, 404) and bool(_RETIREMENT_WORDS.search(message)))

    def retirement_notice(self, today: date) -> str | None:
        """Until this version retires: the date, and how to switch; None for a version with no date,
        and from that day on (Census's own answers then say it is retired)."""
        if self.retires_on is None or today >= self.retires_on:
            return None
        days = (self.retires_on - today).days
        when = "tomorrow" if days == 1 else f"in {days} days"
        return f"Census retires API {self.name} on {self.retires_on.isoformat()}, {when}. {RETIRED_ADVICE}"

    def unavailable_advice(self, today: date) -> str:
        """What to do when an operation is missing here: the UI, or v1 while it lasts."""
        if self.name != "v1" and today < V1_RETIREMENT:
            return (
                "Do it in the Census UI, or use API v1 until it retires on "
                f"{V1_RETIREMENT.isoformat()} (CENSUS_API_VERSION=v1 with a workspace API token)."
            )
        return "Do it in the Census UI."

    @property
    def host_settings(self) -> str:
        """The settings that choose the host: the region only where a version has more than one."""
        return "CENSUS_REGION / CENSUS_API_BASE_URL" if len(self.hosts) > 1 else "CENSUS_API_BASE_URL"

    def token_mismatch(self, token: str) -> str | None:
        """A sentence naming the likely mix-up when a token of the other version's kind is used."""
        workspace_token = token.startswith(WORKSPACE_TOKEN_PREFIX)
        if self.name == "v2" and workspace_token:
            return (
                "The token looks like a v1 workspace API token (secret-token:...), "
                f"but API v2 takes a personal access token: {self.credential_advice}"
            )
        if self.name == "v1" and not workspace_token:
            return (
                "The token does not look like a workspace API token (secret-token:...); "
                "if it is a personal access token, it works with API v2 only: set CENSUS_API_VERSION=v2."
            )
        return None


V1 = ApiVersion(
    name="v1",
    hosts={"us": "https://app.getcensus.com/api/v1", "eu": "https://app-eu.getcensus.com/api/v1"},
    routes=_SOURCE_ROUTES,
    credential_kind="workspace API token (secret-token:...)",
    credential_advice="find it in the workspace's settings, under API Access.",
    retires_on=V1_RETIREMENT,
)

V2 = ApiVersion(
    name="v2",
    # No v2 host per region is known: Census's provider says v2 has none.
    hosts={"us": "https://app.getcensus.com/api/v2"},
    routes=_SOURCE_ROUTES,
    credential_kind="personal access token",
    credential_advice=(
        "create one in your user settings, under Personal Access Tokens, then set CENSUS_API_TOKEN."
    ),
    group_field="group_id",
    # Only reading a source and listing them are known to exist on v2 (Census's Terraform provider).
    provisional=frozenset(
        {
            Operation.CREATE_SOURCE,
            Operation.UPDATE_SOURCE,
            Operation.DELETE_SOURCE,
            Operation.REFRESH_TABLES,
            Operation.REFRESH_TABLES_STATUS,
            Operation.LIST_TABLES,
            Operation.LIST_SOURCE_TYPES,
            Operation.GET_SOURCE_TYPE,
        }
    ),
    missing_statuses=frozenset({405, 410}),
)

RETIRED_ADVICE = (
    "Switch to API v2: create a personal access token (your user settings, Personal Access Tokens), "
    "set CENSUS_API_TOKEN to it and CENSUS_API_VERSION=v2, then restart census-mcp."
)

API_VERSIONS: Mapping[VersionName, ApiVersion] = {"v1": V1, "v2": V2}


def default_version(today: date) -> VersionName:
    """v1 until Census retires it, v2 from that day on."""
    return "v1" if today < V1_RETIREMENT else "v2"
