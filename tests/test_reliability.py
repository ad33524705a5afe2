"""Fault injection through the real MCP server: reads survive transient faults, creates are never
doubled, persistent faults read clearly, and the server keeps serving."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from census_mcp.census.retry import RetryPolicy
from census_mcp.sandbox import GROUPS, FaultConfig
from census_mcp.sandbox.faults import NO_FAULTS
from census_mcp.sandbox.seed import iso
from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, Scripted, running_sandbox, serve_on_loopback, settings_for
from tests.helpers import call, call_error, call_ok

pytestmark = pytest.mark.anyio

# Real sleeps, kept tiny: these tests are about outcomes, test_retries.py about the waits.
QUICK = RetryPolicy(max_attempts=10, base_delay_seconds=0.001, max_delay_seconds=0.005)
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "census", "password": "pw", "database": "dw"}
TRANSIENT = ("429", "500", "502", "503", "html", "slow", "drop", "truncated", "malformed")


@pytest.fixture
def faulty_sandbox(api_version: str) -> Iterator[Sandbox]:
    with running_sandbox(api_version, refresh_seconds=0.05) as sandbox:
        yield sandbox


@pytest.fixture
async def faulty_client(faulty_sandbox: Sandbox) -> AsyncIterator[Client]:
    settings = faulty_sandbox.settings(timeout_seconds=0.3)
    async with Client(build_server(settings, retry=QUICK)) as connected:
        yield connected


async def test_every_read_succeeds_under_thirty_percent_transient_faults(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    faulty_sandbox.workspace.faults = FaultConfig(rate=0.3, kinds=TRANSIENT, seed=11, slow_seconds=1)
    reads = [
        ("list_sources", {"refresh": True, "test_status": "failed"}),
        ("get_source", {"source_id": 7}),
        ("list_source_types", {"refresh": True}),
        ("get_source_type", {"service_name": "redshift"}),
        ("list_source_tables", {"source_id": 1, "refresh": True}),
    ]
    for round_number in range(6):
        for tool, arguments in reads:
            result = await call_ok(faulty_client, tool, arguments)
            assert result.structured_content is not None, (round_number, tool)
    faults = [r.fault for r in faulty_sandbox.workspace.requests if r.fault]
    assert len(faults) >= 10, "the faults must really have been injected"
    assert len(set(faults)) >= 5


@pytest.mark.parametrize("kind", ["drop", "slow", "truncated", "malformed"])
async def test_a_create_whose_answer_is_lost_is_found_not_repeated(
    faulty_sandbox: Sandbox, faulty_client: Client, kind: str
) -> None:
    before = set(faulty_sandbox.workspace.sources)
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,), methods=("POST",), slow_seconds=1)
    arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Warehouse (lost answer)"}
    result = await call_ok(faulty_client, "create_source", arguments)
    (created,) = set(faulty_sandbox.workspace.sources) - before
    assert result.structured_content is not None
    assert result.structured_content["id"] == created
    assert "did not confirm the create, but it took effect" in result_text(result)
    assert sum(r.method == "POST" for r in faulty_sandbox.workspace.requests) <= 1


@pytest.mark.parametrize("kind", ["500", "502", "503", "html"])
async def test_a_create_that_failed_before_census_says_so_and_creates_nothing(
    faulty_sandbox: Sandbox, faulty_client: Client, kind: str
) -> None:
    before = set(faulty_sandbox.workspace.sources)
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,), methods=("POST",))
    text = await call_error(faulty_client, "create_source", {"type": "postgres", "credentials": POSTGRES})
    assert "unknown whether Census created it" in text
    assert "No new postgres source appears" in text
    assert "before trying again" in text
    assert set(faulty_sandbox.workspace.sources) == before
    assert sum(r.method == "POST" for r in faulty_sandbox.workspace.requests) == 1


async def test_a_lost_create_is_never_credited_with_a_source_that_was_already_there(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    """A twin of a source made a moment ago: v1 creates a second one, and the lookup finds that one,
    not the first; v2 refuses the taken name (409), and the lookup says nothing new appeared."""
    arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Twin"}
    first = await call_ok(faulty_client, "create_source", arguments)
    assert first.structured_content is not None
    first_id = first.structured_content["id"]
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",), methods=("POST",))
    before = set(faulty_sandbox.workspace.sources)
    result = await call(faulty_client, "create_source", arguments)
    made = set(faulty_sandbox.workspace.sources) - before
    text = result_text(result)
    if faulty_sandbox.api_version == "v1":
        (second,) = made
        assert not result.is_error, text
        assert result.structured_content is not None
        assert result.structured_content["id"] == second != first_id
    else:
        assert made == set()
        assert result.is_error
        assert 'No new postgres source labelled "Twin" appears' in text
        assert f"#{first_id}" not in text


async def test_lookalikes_created_meanwhile_are_named_not_guessed(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    await call_ok(faulty_client, "list_sources")  # what the create will take as already there
    # Someone else creates a lookalike, not through this server, so the cached list does not have it.
    theirs = max(faulty_sandbox.workspace.sources) + 100
    lookalike = faulty_sandbox.workspace.sources[1] | {
        "id": theirs,
        "name": "Twin (theirs)",
        "label": "Twin",
        "type": "postgres",
        "created_at": iso(datetime.now(UTC)),
        "group_id": GROUPS[0],
    }
    faulty_sandbox.workspace.sources[theirs] = lookalike
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",), methods=("POST",))
    before = set(faulty_sandbox.workspace.sources)
    text = await call_error(
        faulty_client, "create_source", {"type": "postgres", "credentials": POSTGRES, "label": "Twin"}
    )
    (ours,) = set(faulty_sandbox.workspace.sources) - before
    assert "New postgres sources that could be it" in text
    ours_named, theirs_named = f'#{ours} "Twin"', f'#{theirs} "Twin (theirs)"'
    either_order = [f"{ours_named}, {theirs_named}", f"{theirs_named}, {ours_named}"]
    assert any(f"could be it: {both}. Check them" in text for both in either_order)


async def test_a_lost_create_never_claims_a_source_with_another_label(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    """Someone else's new source of the same type, in the same group, made a moment ago, is not ours
    when its label differs: the create that never reached Census must not be reported as done."""
    await call_ok(faulty_client, "list_sources")  # what the create will take as already there
    theirs = max(faulty_sandbox.workspace.sources) + 100
    faulty_sandbox.workspace.sources[theirs] = faulty_sandbox.workspace.sources[1] | {
        "id": theirs,
        "name": "Finance replica",
        "label": "Finance replica",
        "type": "postgres",
        "created_at": iso(datetime.now(UTC)),
        "group_id": GROUPS[0],
    }
    # Census fails before creating anything, and says so only with a 500.
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("500",), methods=("POST",))
    before = set(faulty_sandbox.workspace.sources)
    text = await call_error(
        faulty_client, "create_source", {"type": "postgres", "credentials": POSTGRES, "label": "Ours"}
    )
    assert set(faulty_sandbox.workspace.sources) == before
    assert "unknown whether Census created it" in text
    assert 'No new postgres source labelled "Ours" appears' in text
    assert f"#{theirs}" not in text


async def test_a_lost_create_claims_only_a_new_source_of_its_type_label_and_group(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    """Made meanwhile by someone else, each lookalike differs from the create in one way: another type,
    another group (v2), made long before the call (restored from elsewhere), or of unknown age.
    None is ours; the one whose name is the label, and that is new, is."""
    await call_ok(faulty_client, "list_sources")  # what the create will take as already there
    workspace = faulty_sandbox.workspace
    first = max(workspace.sources) + 100
    now, group = iso(datetime.now(UTC)), GROUPS[0]
    ours = {"type": "postgres", "name": "Ours", "label": None, "created_at": now, "group_id": group}
    an_hour_ago_in_karachi = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5)))
    lookalikes = [
        ours | {"type": "snowflake"},
        ours | {"created_at": "2020-01-01T00:00:00Z"},
        ours | {"created_at": iso(datetime.now(UTC) - timedelta(minutes=10, seconds=30))},
        ours | {"created_at": an_hour_ago_in_karachi.isoformat()},
        ours | {"created_at": "not a time"},
        *([ours | {"group_id": GROUPS[1]}] if faulty_sandbox.api_version == "v2" else []),
    ]
    for number, lookalike in enumerate(lookalikes):
        workspace.sources[first + number] = workspace.sources[1] | lookalike | {"id": first + number}
    workspace.faults = FaultConfig(rate=1.0, kinds=("500",), methods=("POST",))
    arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Ours"}
    text = await call_error(faulty_client, "create_source", arguments)
    assert 'No new postgres source labelled "Ours" appears' in text
    assert all(f"#{first + number}" not in text for number in range(len(lookalikes)))
    # The same, made meanwhile (its time without a zone, read as UTC): its name is the label, it is found.
    naive_now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    workspace.sources[first + 10] = workspace.sources[1] | ours | {"id": first + 10, "created_at": naive_now}
    found = await call_ok(faulty_client, "create_source", arguments)
    assert found.structured_content is not None
    assert found.structured_content["id"] == first + 10


async def test_a_lost_create_that_cannot_be_looked_for_says_not_to_create_again(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    await call_ok(faulty_client, "list_sources")  # what the create will take as already there
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",), methods=("POST", "GET"))
    text = await call_error(faulty_client, "create_source", {"type": "postgres", "credentials": POSTGRES})
    assert text.startswith("The answer to the create was lost (")
    assert "and looking for the new source failed too (" in text
    assert "Do not create it again yet: call list_sources with type=postgres and refresh=true first." in text
    assert sum(r.method == "POST" for r in faulty_sandbox.workspace.requests) == 1


async def test_a_refresh_whose_answer_is_lost_says_it_is_harmless_to_repeat(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",), methods=("POST",))
    text = await call_error(faulty_client, "refresh_source_tables", {"source_id": 3})
    assert "whether this took effect is unknown" in text
    assert "a refresh is harmless to repeat" in text
    assert sum(r.method == "POST" for r in faulty_sandbox.workspace.requests) == 1


@pytest.mark.parametrize("kind", ["503", "html", "drop"])
async def test_persistent_faults_read_clearly_and_the_server_keeps_serving(
    faulty_sandbox: Sandbox, faulty_client: Client, kind: str
) -> None:
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,))
    text = await call_error(faulty_client, "get_source", {"source_id": 5})
    assert "Gave up after 10 attempts" in text
    assert ("busy or failing" in text) or ("Could not reach Census" in text)
    assert "Traceback" not in text
    faulty_sandbox.workspace.faults = NO_FAULTS
    assert (await call_ok(faulty_client, "get_source", {"source_id": 5})).structured_content is not None
    await call_ok(faulty_client, "list_sources", {"refresh": True})


async def test_a_tool_call_never_hangs(scripted: tuple[Scripted, str]) -> None:
    fake, base_url = scripted
    fake.delay_seconds = 30
    settings = settings_for(base_url, token=SecretStr("secret-token:x"), deadline_seconds=1.0)
    async with Client(build_server(settings, retry=QUICK)) as client:
        started = time.monotonic()
        text = await call_error(client, "get_source", {"source_id": 1})
        took = time.monotonic() - started
    assert took < 5
    assert ("timed out" in text) or ("time for this call ran out" in text)


async def _trickle(_: Request) -> Response:
    """An answer that never ends: a byte every 0.1 s, each well within any read timeout (for 20 s at
    most, so the fake stops by itself)."""

    async def bytes_slowly() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b" "
            await anyio.sleep(0.1)

    return StreamingResponse(bytes_slowly(), media_type="application/json")


async def test_a_census_answer_that_trickles_in_forever_is_cut_by_the_backstop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No per-request timeout fires while bytes keep coming, so the request itself ignores the
    deadline: the hard stop behind it must end the call, soon after the deadline."""
    monkeypatch.setattr("census_mcp.server._BACKSTOP_SECONDS", 0.5)  # the server's 5 s, shortened
    app = Starlette(routes=[Route("/{path:path}", _trickle)])
    with serve_on_loopback(app) as root:
        base_url = f"{root}/api/v1"
        settings = settings_for(base_url, token=SecretStr("secret-token:x"), deadline_seconds=1.0)
        async with Client(build_server(settings, retry=QUICK)) as client:
            with anyio.fail_after(15):
                text = await call_error(client, "get_source", {"source_id": 1})
    assert "get_source did not finish within 1 s and was stopped" in text


async def test_a_create_whose_read_back_fails_still_reports_the_new_id(
    faulty_sandbox: Sandbox, faulty_client: Client
) -> None:
    before = set(faulty_sandbox.workspace.sources)
    faulty_sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("503",), methods=("GET",))
    arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Read back later"}
    result = await call_ok(faulty_client, "create_source", arguments)
    (created,) = set(faulty_sandbox.workspace.sources) - before
    assert result.structured_content is not None
    assert result.structured_content["id"] == created
    assert result.structured_content["name"] == "Read back later"
    assert result.structured_content["type"] == "postgres"
    assert result.structured_content.get("group_id") == faulty_sandbox.group_id
    assert "Reading the new source back failed" in result_text(result)
    assert sum(r.method == "POST" for r in faulty_sandbox.workspace.requests) == 1
    unlabelled = await call_ok(faulty_client, "create_source", {"type": "postgres", "credentials": POSTGRES})
    assert unlabelled.structured_content is not None
    assert unlabelled.structured_content["name"] == "(new postgres source)"
