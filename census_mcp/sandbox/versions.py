"""What differs between the two API versions the sandbox speaks; the twin of census_mcp/census/api.py.

Both serve the same seeded workspace. /api/v1 takes workspace tokens and shows no groups. /api/v2
(provisional, as NOTES.md describes it) takes personal access tokens, shows each source's
group_id, needs one inside a create's connection, answers 409 when a name is taken in a group, and
says 404 as `{"status":404}`. Its unpublished operations can be made missing, and v1 can be made retired, so
that a client's handling of both can be tried without an account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SANDBOX_TOKEN = "secret-token:sandbox"  # noqa: S105 - the public, fake workspace token of the sandbox
SANDBOX_PAT = "sandbox-personal-access-token"  # the public, fake PAT of the sandbox
SANDBOX_TOKENS = {"v1": SANDBOX_TOKEN, "v2": SANDBOX_PAT}
GROUPS = ("abundant_giraffe", "steady_heron", "quiet_lynx")
"""Fivetran groups the seeded sources are spread over; a PAT sees all of them."""

V2_OPERATIONS = (
    "create_source",
    "update_source",
    "delete_source",
    "refresh_tables",
    "refresh_tables_status",
    "tables",
    "source_types",
)
"""The v2 operations Census has not published, which SandboxConfig.missing_v2 can take away."""
MISSING_STATUSES = (404, 405, 410)
RETIRED_STATUSES = (410, 401, 404)
_RETIRED_MESSAGE = "API v1 is deprecated and has been retired. Use API v2 with a personal access token."


@dataclass(frozen=True)
class SandboxVersion:
    name: str
    group_field: str | None
    """Where a source's group shows, and where a create names it; None: no groups."""
    not_found_status: Any
    """The `status` of a 404 for an unknown source."""
    names_unique_per_group: bool = False

    @property
    def prefix(self) -> str:
        return f"/api/{self.name}"

    def shape(self, source: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        shaped = {key: source[key] for key in fields}
        if self.group_field is not None:
            shaped[self.group_field] = source["group_id"]
        return shaped

    def create_group(self, connection: Mapping[str, Any]) -> Any:
        """The group a create names inside its wrapped connection, as v2's published creates do."""
        return connection.get(self.group_field) if self.group_field else GROUPS[0]


V1 = SandboxVersion(name="v1", group_field=None, not_found_status="not_found")
V2 = SandboxVersion(name="v2", group_field="group_id", not_found_status=404, names_unique_per_group=True)
VERSIONS = (V1, V2)


def missing_body(status: int) -> dict[str, Any]:
    """What a v2 route that does not exist answers: a bare status, as v2's 404s are."""
    return {"status": status} if status == 404 else {"status": status, "message": "Not available"}


def retired_body(status: int) -> dict[str, Any]:
    return {"status": status, "message": _RETIRED_MESSAGE}
