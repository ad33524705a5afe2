"""API v1 and v2: groups, what v2 does not offer yet, a retired v1, tokens of the wrong kind, and the
one mapping that holds every difference. The rest of the suite runs every tool on both versions."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from census_mcp.census.api import (
    API_VERSIONS,
    RETIRED_ADVICE,
    V1,
    V1_RETIREMENT,
    V2,
    ApiVersion,
    default_version,
)
from census_mcp.sandbox import GROUPS, SANDBOX_PAT, SANDBOX_TOKEN, V2_OPERATIONS
from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok
from tests.test_app import APPS
from tests.test_stdio import _console_script, _environment, launched

pytestmark = pytest.mark.anyio
PACKAGE = Path(__file__).parent.parent / "census_mcp"
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "census", "password": "pw", "database": "dw"}


# ------------------------------------------------------------------ groups


def test_the_v2_sandbox_from_the_command_line_names_failing_sources_with_their_groups() -> None:
    done = subprocess.run(
        [
            _console_script(),
            "--sandbox",
            "--api-version",
            "v2",
            "call",
            "list_sources",
            '{"test_status": "failed"}',
        ],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    first, *rows = done.stdout.splitlines()
    assert "sources match (last test failed)" in first
    groups = dict(part.rsplit(" ", 1) for part in first.split(" Groups: ")[1].rstrip(".").split(", "))
    assert set(groups) <= set(GROUPS)
    assert len(groups) >= 2
    failing = [row for row in rows if row.startswith("- #")]
    assert sum(int(n) for n in groups.values()) == len(failing) > 0
    # Each group heads its rows, once.
    headers = [row for row in rows if row.startswith("In group ")]
    assert headers == sorted(set(headers), key=headers.index)
    assert {header.removeprefix("In group ").strip('":') for header in headers} == set(groups)


async def test_sources_carry_their_group_and_list_sources_counts_and_filters_by_it(
    client: Client, sandbox: Sandbox
) -> None:
    sources = sandbox.workspace.sources.values()
    everything = (await call_ok(client, "list_sources", {"limit": 100})).structured_content
    detail = (await call_ok(client, "get_source", {"source_id": 5})).structured_content
    assert everything is not None
    assert detail is not None
    if sandbox.api_version == "v1":
        assert "by_group" not in everything["counts"]
        assert all("group_id" not in item for item in everything["sources"])
        assert "group_id" not in detail
        refused = await call_error(client, "list_sources", {"group_id": GROUPS[0]})
        assert "group_id applies to Census API v2 only" in refused
        return
    assert len(GROUPS) >= 3
    assert everything["counts"]["by_group"] == dict(Counter(s["group_id"] for s in sources))
    assert {item["group_id"] for item in everything["sources"]} == set(GROUPS)
    assert detail["group_id"] == sandbox.workspace.sources[5]["group_id"]
    shown = await call_ok(client, "get_source", {"source_id": 5})
    assert f'in group "{detail["group_id"]}"' in result_text(shown).splitlines()[0]
    group = GROUPS[1]
    arguments = {"group_id": group, "test_status": "failed", "type": "snowflake", "limit": 100}
    filtered = await call_ok(client, "list_sources", arguments)
    data = filtered.structured_content
    assert data is not None
    expected = {
        s["id"]
        for s in sources
        if s["group_id"] == group and s["type"] == "snowflake" and s["last_test_succeeded"] is False
    }
    assert {item["id"] for item in data["sources"]} == expected
    assert data["counts"]["by_group"] == ({group: len(expected)} if expected else {})
    assert f"group {group}" in result_text(filtered).splitlines()[0]
    none = await call_ok(client, "list_sources", {"group_id": group.upper()})
    assert none.structured_content is not None
    assert none.structured_content["total"] == 0
    # Group ids are exact: a miscased one is named, with the groups there are.
    hint = f"No source in the workspace has group {group.upper()}; the groups it has: "
    assert hint in result_text(none)
    assert all(known in result_text(none).split(hint)[1] for known in GROUPS)


async def test_create_source_needs_a_group_on_v2_and_refuses_one_on_v1(sandbox: Sandbox) -> None:
    before = set(sandbox.workspace.sources)
    arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Grouped"}
    async with Client(build_server(sandbox.settings(group_id=None))) as client:
        if sandbox.api_version == "v1":
            refused = await call_error(client, "create_source", {**arguments, "group_id": GROUPS[2]})
            assert "group_id applies to Census API v2 only" in refused
            assert set(sandbox.workspace.sources) == before
            created = await call_ok(client, "create_source", arguments)
            assert created.structured_content is not None
            assert "group_id" not in created.structured_content
            return
        missing = await call_error(client, "create_source", arguments)
        assert "pass group_id, or set CENSUS_GROUP_ID" in missing
        assert all(f'"{group}"' in missing for group in GROUPS)
        assert set(sandbox.workspace.sources) == before
        created = await call_ok(client, "create_source", {**arguments, "group_id": GROUPS[2]})
    assert created.structured_content is not None
    assert created.structured_content["group_id"] == GROUPS[2]
    assert sandbox.workspace.sources[created.structured_content["id"]]["group_id"] == GROUPS[2]
    async with Client(build_server(sandbox.settings(group_id=GROUPS[1]))) as client:
        by_default = await call_ok(client, "create_source", {**arguments, "label": "By default"})
    assert by_default.structured_content is not None
    assert sandbox.workspace.sources[by_default.structured_content["id"]]["group_id"] == GROUPS[1]


async def test_the_v2_create_names_its_group_inside_the_wrapped_connection_as_published() -> None:
    """Fivetran's published v2 creates wrap their body and put group_id inside it; the sandbox takes
    only that shape, and the client sends it."""
    connection = {"type": "postgres", "credentials": POSTGRES, "label": "Wrapped"}
    assert V2.create_body(connection, GROUPS[1]) == {"connection": {**connection, "group_id": GROUPS[1]}}
    assert V1.create_body(connection, GROUPS[1]) == {"connection": connection}
    with running_sandbox("v2") as sandbox:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {sandbox.token}"}) as http:
            beside = await http.post(
                f"{sandbox.base_url}/sources", json={"connection": connection, "group_id": GROUPS[1]}
            )
            assert beside.status_code == 422
            assert "group_id is required" in beside.json()["message"]
        async with sandbox.census() as census:
            created = await census.create_source(connection, group_id=GROUPS[1])
    assert isinstance(created, int)
    assert sandbox.workspace.sources[created]["group_id"] == GROUPS[1]
    assert "group_id" not in sandbox.workspace.sources[created]["connection_details"]


async def test_a_group_named_in_the_call_wins_over_census_group_id() -> None:
    """CENSUS_GROUP_ID is the default, for calls that name no group; one that names a group is
    created there."""
    with running_sandbox("v2") as sandbox:
        arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Named", "group_id": GROUPS[2]}
        async with Client(build_server(sandbox.settings(group_id=GROUPS[1]))) as client:
            created = await call_ok(client, "create_source", arguments)
    assert created.structured_content is not None
    assert created.structured_content["group_id"] == GROUPS[2]
    assert sandbox.workspace.sources[created.structured_content["id"]]["group_id"] == GROUPS[2]


async def test_the_apps_sorted_view_filters_by_group(sandbox: Sandbox) -> None:
    """The app's column sort (list_sources_sorted) takes list_sources's filters, the group among them."""
    async with Client(build_server(sandbox.settings()), extensions=[APPS]) as app:
        if sandbox.api_version == "v1":
            refused = await call_error(app, "list_sources_sorted", {"sort_by": "name", "group_id": GROUPS[0]})
            assert "group_id applies to Census API v2 only" in refused
            return
        for group in GROUPS:
            arguments = {"sort_by": "name", "group_id": group, "limit": 100}
            page = (await call_ok(app, "list_sources_sorted", arguments)).structured_content
            assert page is not None
            in_group = [s for s in sandbox.workspace.sources.values() if s["group_id"] == group]
            by_name = sorted(in_group, key=lambda s: (s["name"].casefold(), s["id"]))
            assert [source["id"] for source in page["sources"]] == [s["id"] for s in by_name]
            assert page["total"] == len(in_group) < len(sandbox.workspace.sources)


async def test_a_name_taken_in_the_group_is_a_conflict_on_v2() -> None:
    with running_sandbox("v2") as sandbox:
        taken = sandbox.workspace.sources[3]
        async with Client(build_server(sandbox.settings(group_id=taken["group_id"]))) as client:
            text = await call_error(
                client, "create_source", {"type": "postgres", "credentials": POSTGRES, "label": taken["name"]}
            )
    assert "conflicts with the workspace as it is now (409)" in text
    assert "already exists" in text
    assert "Check the current state with list_sources" in text


# ------------------------------------------------------------------ operations v2 has not published

CALLS_OF = {
    "create_source": [
        ("create_source", {"type": "postgres", "credentials": POSTGRES, "group_id": GROUPS[0]}),
    ],
    "update_source": [("update_source", {"source_id": 2, "label": "Renamed"})],
    "delete_source": [("delete_source", {"source_id": 2})],  # confirm_name: the name it has
    "refresh_tables": [("refresh_source_tables", {"source_id": 2})],
    "refresh_tables_status": [("get_refresh_tables_status", {"source_id": 2})],
    "tables": [("list_source_tables", {"source_id": 2})],
    "source_types": [("list_source_types", {}), ("get_source_type", {"service_name": "snowflake"})],
}


@pytest.mark.parametrize("status", [404, 405, 410])
@pytest.mark.parametrize("operation", V2_OPERATIONS)
async def test_an_operation_missing_on_v2_says_so_in_one_sentence_with_the_next_step(
    operation: str, status: int
) -> None:
    with running_sandbox("v2", missing_v2=(operation,), missing_status=status) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            calls = CALLS_OF[operation]
            if operation == "refresh_tables_status":  # a job that exists, so that only the route is missing
                job = await call_ok(client, "refresh_source_tables", {"source_id": 2})
                assert job.structured_content is not None
                calls = [
                    (tool, {**arguments, "refresh_key": job.structured_content["refresh_key"]})
                    for tool, arguments in calls
                ]
            if operation == "delete_source":
                source = await call_ok(client, "get_source", {"source_id": 2})
                assert source.structured_content is not None
                calls = [
                    ("delete_source", {"source_id": 2, "confirm_name": source.structured_content["name"]})
                ]
            before = {source_id: dict(source) for source_id, source in sandbox.workspace.sources.items()}
            texts = [await call_error(client, tool, arguments) for tool, arguments in calls]
            still_served = await call_ok(client, "get_source", {"source_id": 2})
            assert {
                source_id: dict(source) for source_id, source in sandbox.workspace.sources.items()
            } == before
    assert still_served.structured_content is not None
    for text in texts:
        assert "No source with id" not in text
        assert "Traceback" not in text
        assert "Do it in the Census UI, or use API v1 until it retires on 2027-01-15" in text
        if operation == "refresh_tables_status" and status == 404:
            # A 404 for a job cannot tell a wrong key from a missing route: it says both.
            assert "Census found no refresh job" in text
            assert "may not offer checking a table refresh yet" in text
        else:
            assert text.startswith("Census API v2 does not offer ")
            assert f"answered {status}" in text


async def test_a_missing_source_on_a_missing_v2_route_is_still_a_missing_source() -> None:
    with running_sandbox("v2", missing_v2=("tables",)) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            text = await call_error(client, "list_source_tables", {"source_id": 99999})
            unknown_type = await call_error(client, "get_source_type", {"service_name": "oracle"})
    assert "No source with id 99999 exists" in text
    assert "does not offer" not in text
    assert "no source type named 'oracle'" in unknown_type


def test_after_v1_retires_the_advice_no_longer_offers_it() -> None:
    assert "use API v1" in V2.unavailable_advice(date(2027, 1, 14))
    assert V2.unavailable_advice(V1_RETIREMENT) == "Do it in the Census UI."


# ------------------------------------------------------------------ v1's deadline, before and after


async def test_the_model_is_told_of_v1s_retirement_on_v1_until_the_day(sandbox: Sandbox) -> None:
    async def told(settings: Any, today: date) -> str:
        async with Client(build_server(settings, today=today)) as client:
            return client.instructions or ""

    before = await told(sandbox.settings(), date(2026, 12, 4))
    assert before.startswith("Manage the data-warehouse sources of a Census")
    notice = "This server uses Census API v1. Census retires API v1 on 2027-01-15, in 42 days."
    assert (notice in before) == (sandbox.api_version == "v1")
    if sandbox.api_version == "v1":
        assert "set CENSUS_API_TOKEN to it and CENSUS_API_VERSION=v2" in before
        assert before.endswith("Tell the user when it matters.")
    assert "retires" not in await told(sandbox.settings(), V1_RETIREMENT)
    assert "retires" not in await told(sandbox.settings(sandbox=True, api_version="v1"), date(2026, 12, 4))


def test_the_start_up_log_says_it_once_while_v1_lasts() -> None:
    """The server as a client launches it: the real clock decides, so the line is there exactly while
    v1 lasts (the pinned dates are above and in tests/test_settings.py)."""
    done = launched("--log-level", "INFO", CENSUS_API_TOKEN="secret-token:x", CENSUS_API_VERSION="v1")
    assert done.returncode == 0, done.stderr
    said = done.stderr.count("Census retires API v1 on 2027-01-15")
    assert said == (1 if date.today() < V1_RETIREMENT else 0)


# ------------------------------------------------------------------ a retired v1, tokens of the wrong kind


@pytest.mark.parametrize("status", [410, 401, 404])
async def test_every_tool_says_v1_is_retired_and_how_to_switch(status: int) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_sources", {}),
        ("get_source", {"source_id": 2}),
        ("create_source", {"type": "postgres", "credentials": POSTGRES}),
        ("update_source", {"source_id": 2, "label": "x"}),
        ("delete_source", {"source_id": 2, "confirm_name": "x"}),
        ("refresh_source_tables", {"source_id": 2}),
        ("get_refresh_tables_status", {"source_id": 2, "refresh_key": 1}),
        ("list_source_types", {}),
        ("get_source_type", {"service_name": "snowflake"}),
        ("list_source_tables", {"source_id": 2}),
    ]
    with running_sandbox("v1", v1_retired=status) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            texts = {tool: await call_error(client, tool, arguments) for tool, arguments in calls}
        before = len(sandbox.workspace.sources)
    assert before == 60
    for tool, text in texts.items():
        assert text.startswith("Census has retired API v1 ("), (tool, text)
        assert f"answered {status}" in text
        assert "create a personal access token" in text
        assert "CENSUS_API_VERSION=v2" in text


@pytest.mark.parametrize(
    ("version", "token", "named"),
    [
        ("v2", "secret-token:a-workspace-token", "looks like a v1 workspace API token"),
        ("v1", "a-personal-access-token", "if it is a personal access token, it works with API v2 only"),
        (
            "v1",
            "secret-token:revoked",
            "it must be a workspace API token (secret-token:...) for this host "
            "(CENSUS_REGION / CENSUS_API_BASE_URL)",
        ),
        # v2 has one host, so no region to check.
        (
            "v2",
            "revoked-personal-access-token",
            "it must be a personal access token for this host (CENSUS_API_BASE_URL).",
        ),
    ],
)
async def test_a_rejected_token_of_the_other_kind_is_named(version: str, token: str, named: str) -> None:
    with running_sandbox(version) as sandbox:
        async with Client(build_server(sandbox.settings(token=SecretStr(token)))) as client:
            text = await call_error(client, "list_sources")
    assert text.startswith("Census rejected the API token (401).")
    assert named in text
    assert token not in text


# ------------------------------------------------------------------ the sandbox speaks both


async def test_the_sandbox_serves_one_workspace_in_both_versions() -> None:
    with running_sandbox("v1") as sandbox:
        async with httpx2.AsyncClient(base_url=sandbox.root) as http:
            v1 = (await http.get("/api/v1/sources/4", headers=_bearer(SANDBOX_TOKEN))).json()
            v2 = (await http.get("/api/v2/sources/4", headers=_bearer(SANDBOX_PAT))).json()
            workspace_token_on_v2 = await http.get("/api/v2/sources/4", headers=_bearer(SANDBOX_TOKEN))
            missing = await http.get("/api/v2/sources/99999", headers=_bearer(SANDBOX_PAT))
            deleted = await http.delete("/api/v2/sources/4", headers=_bearer(SANDBOX_PAT))
            gone = await http.get("/api/v1/sources/4", headers=_bearer(SANDBOX_TOKEN))
    assert "group_id" not in v1["data"]
    assert v2["data"] == v1["data"] | {"group_id": v2["data"]["group_id"]}
    assert v2["data"]["group_id"] in GROUPS
    assert workspace_token_on_v2.status_code == 401
    assert (missing.status_code, missing.json()) == (404, {"status": 404})
    assert (deleted.status_code, deleted.json()) == (200, {"status": "deleted"})
    assert gone.status_code == 404


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ one mapping


def _string_constants(path: Path) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_every_api_path_lives_in_the_one_mapping_and_its_sandbox_twin() -> None:
    """Correcting a v2 path on the day the reference appears is a change to census/api.py (and the
    sandbox's versions.py and routes), nowhere else."""
    mapping = PACKAGE / "census" / "api.py"
    looks_like_a_path = ("api/v1", "api/v2", "{source_id}", "refresh_tables", "source_types/")
    strays = [
        f"{path.relative_to(PACKAGE)}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != mapping and "sandbox" not in path.parts
        for value in _string_constants(path)
        if any(part in value for part in looks_like_a_path)
        and not value.startswith(("get_", "list_"))
        and " " not in value
    ]
    assert strays == []
    paths = {route.path for route in V2.routes.values()}
    assert {"sources", "sources/{source_id}", "sources/{source_id}/refresh_tables", "source_types"} <= paths
    assert V1.hosts["eu"].endswith("/api/v1")
    assert set(V2.hosts) == {"us"}
    assert json.dumps(sorted(V2.provisional)) == json.dumps(
        sorted(
            [
                "create_source",
                "update_source",
                "delete_source",
                "refresh_tables",
                "refresh_tables_status",
                "list_tables",
                "list_source_types",
                "get_source_type",
            ]
        )
    )


API_SNAPSHOT = Path(__file__).parent / "snapshots" / "api_versions.json"
# Answers Census may give, to see which of them each version reads as its own retirement.
ANSWERS = [
    (status, message)
    for status in (400, 401, 403, 404, 405, 410, 500)
    for message in (
        "",
        "Not found",
        "API v1 is DEPRECATED",
        "This endpoint has been retired",
        "v1 sunset in effect",
        "This API is no longer supported",
        "This API is no longer available",
        "Please use API v2",
        "use v2",
    )
]


def _as_the_client_sees_it(version: ApiVersion) -> dict[str, Any]:
    """Everything the client reads from one version's mapping: what it asks, where, and what it
    tells the user when Census refuses."""
    ids = {"source_id": 7, "service_name": "snowflake"}
    return {
        "hosts": dict(version.hosts),
        "routes": {
            operation.value: {
                "request": f"{route.method} {route.path_for(**ids)}",
                "does": route.does,
                "scope": route.scope,
                "keyed": route.keyed,
                "provisional": operation in version.provisional,
            }
            for operation, route in version.routes.items()
        },
        "credential_kind": version.credential_kind,
        "credential_advice": version.credential_advice,
        "has_groups": version.has_groups,
        "create_body": [
            version.create_body({"type": "postgres"}, group) for group in (None, "abundant_giraffe")
        ],
        "missing_statuses": sorted(version.missing_statuses),
        "retired_by": [
            f"{status} {message!r}" for status, message in ANSWERS if version.says_retired(status, message)
        ],
        "unavailable_advice": {
            day.isoformat(): version.unavailable_advice(day)
            for day in (date(2026, 12, 1), V1_RETIREMENT - timedelta(days=1), V1_RETIREMENT)
        },
        "token_mismatch": {
            token: version.token_mismatch(token) for token in ("secret-token:abc", "personal-access-token")
        },
        "retirement_notice": {
            day.isoformat(): version.retirement_notice(day)
            for day in (date(2026, 12, 4), V1_RETIREMENT - timedelta(days=1), V1_RETIREMENT)
        },
    }


def test_the_version_mapping_matches_its_snapshot() -> None:
    """What each version asks of Census and says to the user changes only on purpose: regenerate
    with CENSUS_MCP_UPDATE_SNAPSHOTS=1 and review the diff, as for tests/snapshots/tools.json."""
    seen = {
        "versions": {name: _as_the_client_sees_it(version) for name, version in API_VERSIONS.items()},
        "retired_advice": RETIRED_ADVICE,
        "default_version": {
            day.isoformat(): default_version(day)
            for day in (V1_RETIREMENT - timedelta(days=1), V1_RETIREMENT)
        },
    }
    if os.environ.get("CENSUS_MCP_UPDATE_SNAPSHOTS") == "1":
        API_SNAPSHOT.write_text(json.dumps(seen, indent=2, sort_keys=True) + "\n")
    assert seen == json.loads(API_SNAPSHOT.read_text())
