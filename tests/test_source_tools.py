"""get, create, update, delete and refresh against the loopback sandbox."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from census_mcp.redaction import MASK
from census_mcp.sandbox.seed import SECRET_MARKER
from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok, everything_shown, wire_bytes

pytestmark = pytest.mark.anyio

CANARY = "canary-pw-7f3a9c"
REDSHIFT = {
    "hostname": "warehouse.example.us-east-1.redshift.amazonaws.com",
    "port": "5439",
    "user": "census",
    "password": CANARY,
    "database": "demo",
}


def _with_secrets(sandbox: Sandbox) -> list[int]:
    return [
        s["id"] for s in sandbox.workspace.sources.values() if SECRET_MARKER in str(s["connection_details"])
    ]


async def test_get_source_masks_secrets_and_keeps_the_rest(client: Client, sandbox: Sandbox) -> None:
    ids = _with_secrets(sandbox)
    assert ids, "the seed must include sources whose details carry secrets"
    for source_id in ids:
        result = await call_ok(client, "get_source", {"source_id": source_id})
        shown = everything_shown(result)
        assert SECRET_MARKER not in shown
        assert MASK in shown
        data = result.structured_content
        assert data is not None
        raw = sandbox.workspace.sources[source_id]
        assert data["id"] == source_id
        assert data["name"] == raw["name"]
        assert data["type"] == raw["type"]
        for key, value in raw["connection_details"].items():
            if SECRET_MARKER not in str(value):
                assert data["connection_details"][key] == value


async def test_get_source_summarizes_thousands_of_tables(client: Client, sandbox: Sandbox) -> None:
    biggest = max(sandbox.workspace.sources.values(), key=lambda s: len(s.get("data_sources") or []))
    tables = [d for d in biggest["data_sources"] if d["type"] == "table"]
    assert len(tables) >= 1000
    result = await call_ok(client, "get_source", {"source_id": biggest["id"]})
    data = result.structured_content
    assert data is not None
    summary = data["data_sources"]
    assert summary["total"] == len(biggest["data_sources"])
    assert summary["by_kind"]["table"] == len(tables)
    assert summary["first"]["table"] == [t["name"] for t in tables[:8]]
    assert wire_bytes(result) < 8 * 1024
    assert f"{len(tables)} tables" in result_text(result)


async def test_get_source_text_reports_a_failed_test(client: Client, sandbox: Sandbox) -> None:
    failed = next(s for s in sandbox.workspace.sources.values() if s["last_test_succeeded"] is False)
    text = result_text(await call_ok(client, "get_source", {"source_id": failed["id"]}))
    step = next(step for step in failed["last_test_results"]["steps"] if step["status"] == "failed")
    message = step["error"]["message"]
    assert "FAILED" in text
    assert message.split()[0] in text


@pytest.mark.parametrize("returns_full", [False, True])
async def test_create_source_returns_the_source_without_its_credentials(
    api_version: str, returns_full: bool
) -> None:
    with running_sandbox(api_version, create_returns_full=returns_full) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            before = set(sandbox.workspace.sources)
            result = await call_ok(
                client,
                "create_source",
                {
                    "type": "redshift",
                    "credentials": REDSHIFT,
                    "label": "Finance RS",
                    "read_only_connection": True,
                },
            )
        (new_id,) = set(sandbox.workspace.sources) - before
        assert sandbox.workspace.sources[new_id]["read_only_connection"] is True
        data = result.structured_content
        assert data is not None
        assert data["id"] == new_id
        assert data["name"] == "Finance RS"
        assert data["connection_details"]["hostname"] == REDSHIFT["hostname"]
        assert data["connection_details"]["password"] == MASK
        assert CANARY not in everything_shown(result)
        assert result_text(result).startswith(f"Created source #{new_id}")
        posts = [r for r in sandbox.workspace.requests if r.method == "POST"]
        assert len(posts) == 1
        follow_ups = [r for r in sandbox.workspace.requests if r.path.endswith(f"/sources/{new_id}")]
        assert len(follow_ups) == (0 if returns_full else 1)


async def test_create_source_relays_census_validation_without_secrets(
    client: Client, sandbox: Sandbox
) -> None:
    incomplete = {key: value for key, value in REDSHIFT.items() if key != "database"}
    text = await call_error(client, "create_source", {"type": "redshift", "credentials": incomplete})
    assert "Census rejected the request (422)" in text
    assert "database" in text
    assert CANARY not in text


async def test_create_source_requires_type_and_credentials(client: Client, sandbox: Sandbox) -> None:
    text = await call_error(client, "create_source", {"credentials": {}})
    assert "type: Field required" in text
    assert "credentials" in text
    assert sandbox.workspace.requests == []


async def test_update_source_changes_label_and_merges_credentials(client: Client, sandbox: Sandbox) -> None:
    target = next(s for s in sandbox.workspace.sources.values() if s["type"] == "redshift")
    before = dict(target["connection_details"])
    result = await call_ok(
        client,
        "update_source",
        {"source_id": target["id"], "label": "Redshift (Demo v2)", "credentials": {"database": "demo_v2"}},
    )
    data = result.structured_content
    assert data is not None
    assert data["label"] == data["name"] == "Redshift (Demo v2)"
    assert data["connection_details"]["database"] == "demo_v2"
    assert sandbox.workspace.sources[target["id"]]["connection_details"] == before | {"database": "demo_v2"}
    assert result_text(result).startswith(f"Updated source #{target['id']}")


async def test_update_source_with_nothing_to_change_sends_nothing(client: Client, sandbox: Sandbox) -> None:
    text = await call_error(client, "update_source", {"source_id": 1, "credentials": {}})
    assert "Nothing to update" in text
    assert sandbox.workspace.requests == []


async def test_update_source_never_shows_new_secrets(client: Client, sandbox: Sandbox) -> None:
    target = next(s for s in sandbox.workspace.sources.values() if s["type"] == "postgres")
    result = await call_ok(
        client, "update_source", {"source_id": target["id"], "credentials": {"password": CANARY}}
    )
    assert CANARY not in everything_shown(result)
    assert sandbox.workspace.sources[target["id"]]["connection_details"]["password"] == CANARY


async def test_delete_source_needs_the_exact_name(client: Client, sandbox: Sandbox) -> None:
    target = sandbox.workspace.sources[3]
    text = await call_error(client, "delete_source", {"source_id": 3, "confirm_name": target["name"].upper()})
    assert "Nothing was deleted" in text
    assert f'"{target["name"]}"' in text
    assert 3 in sandbox.workspace.sources
    assert not [r for r in sandbox.workspace.requests if r.method == "DELETE"]

    result = await call_ok(client, "delete_source", {"source_id": 3, "confirm_name": target["name"]})
    assert result.structured_content == {"deleted": True, "id": 3, "name": target["name"]}
    assert 3 not in sandbox.workspace.sources
    gone = await call_error(client, "get_source", {"source_id": 3})
    assert "No source with id 3" in gone
    assert "list_sources" in gone


async def test_refresh_runs_from_processing_to_completed(client: Client, sandbox: Sandbox) -> None:
    started = await call_ok(client, "refresh_source_tables", {"source_id": 5})
    job = started.structured_content
    assert job is not None
    assert job["source_id"] == 5
    assert job["status"] == "processing"
    assert "get_refresh_tables_status" in result_text(started)
    key = job["refresh_key"]
    first = await call_ok(client, "get_refresh_tables_status", {"source_id": 5, "refresh_key": key})
    assert first.structured_content == {"source_id": 5, "refresh_key": key, "status": "processing"}
    await anyio.sleep(0.3)
    done = await call_ok(client, "get_refresh_tables_status", {"source_id": 5, "refresh_key": key})
    assert done.structured_content == {"source_id": 5, "refresh_key": key, "status": "completed"}
    assert "completed" in result_text(done)


async def test_refresh_status_of_an_unknown_job(client: Client, sandbox: Sandbox) -> None:
    text = await call_error(client, "get_refresh_tables_status", {"source_id": 5, "refresh_key": 99})
    assert "no refresh job 99 for source #5" in text


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("get_source", {"source_id": 0}),
        ("get_source", {"source_id": -4}),
        ("get_source", {"source_id": "1/../../sources"}),
        ("get_refresh_tables_status", {"source_id": 1, "refresh_key": "1&x=2"}),
        ("delete_source", {"source_id": 1}),
        # Census ids are 64-bit: a longer number would only travel to Census in a URL.
        ("get_source", {"source_id": 2**63}),
        ("get_source", {"source_id": int("9" * 4000)}),
        ("update_source", {"source_id": 2**63, "label": "x"}),
        ("delete_source", {"source_id": 2**63, "confirm_name": "x"}),
        ("refresh_source_tables", {"source_id": 2**63}),
        ("get_refresh_tables_status", {"source_id": 2**63, "refresh_key": 1}),
        ("get_refresh_tables_status", {"source_id": 1, "refresh_key": 2**63}),
        ("list_source_tables", {"source_id": 2**63}),
    ],
)
async def test_ids_are_integers_so_no_other_path_is_reachable(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, object]
) -> None:
    text = await call_error(client, tool, arguments)
    assert text.startswith(f"Invalid arguments for {tool}")
    assert "9999999999" not in text
    assert sandbox.workspace.requests == []


async def test_the_largest_64_bit_id_still_reaches_census(client: Client, sandbox: Sandbox) -> None:
    text = await call_error(client, "get_source", {"source_id": 2**63 - 1})
    assert f"No source with id {2**63 - 1} exists" in text
    assert [request.path for request in sandbox.workspace.requests] == [
        f"{sandbox.prefix}/sources/{2**63 - 1}"
    ]
