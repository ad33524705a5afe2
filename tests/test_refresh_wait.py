"""Long jobs: refresh_source_tables waits with progress, stops at its timeout, and stops polling
when the call is cancelled."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp import Client

from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_ok

pytestmark = pytest.mark.anyio


def _polls(sandbox: Sandbox) -> int:
    return sum(r.path.endswith("/refresh_tables_status") for r in sandbox.workspace.requests)


async def test_waiting_returns_when_the_job_completes_and_reports_progress() -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    with running_sandbox(refresh_seconds=1.2) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            started = time.monotonic()
            result = await client.call_tool(
                "refresh_source_tables", {"source_id": 3, "wait": True}, progress_callback=on_progress
            )
            took = time.monotonic() - started
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    assert "has completed" in result_text(result)
    assert 1.2 <= took < 10
    assert len(progress) >= 2
    assert all(total == 45 for _, total, _ in progress)
    assert [done for done, _, _ in progress] == sorted(done for done, _, _ in progress)
    assert progress[-1][2] == "Table refresh of source #3: completed"
    # Backoff: fewer polls than half-second polling would make.
    assert 2 <= _polls(sandbox) <= 4


async def test_at_the_timeout_it_returns_still_processing_with_the_key(api_version: str) -> None:
    with running_sandbox(api_version, refresh_seconds=30) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            started = time.monotonic()
            result = await call_ok(
                client, "refresh_source_tables", {"source_id": 3, "wait": True, "timeout_seconds": 1}
            )
            took = time.monotonic() - started
    data = result.structured_content
    assert data is not None
    assert data["status"] == "processing"
    assert "still processing after the wait" in result_text(result)
    assert f"refresh_key={data['refresh_key']}" in result_text(result)
    assert 1 <= took < 5


async def test_without_wait_it_returns_at_once(client: Client, sandbox: Sandbox) -> None:
    result = await call_ok(client, "refresh_source_tables", {"source_id": 3})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "processing"
    assert _polls(sandbox) == 0


async def test_cancelling_the_call_stops_the_polling(api_version: str) -> None:
    with running_sandbox(api_version, refresh_seconds=60) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            with anyio.move_on_after(1.2):
                await client.call_tool("refresh_source_tables", {"source_id": 3, "wait": True})
            polls_at_cancel = _polls(sandbox)
            await anyio.sleep(2.5)
            # The server keeps serving after the cancelled call.
            await call_ok(client, "get_source", {"source_id": 3})
        assert polls_at_cancel >= 1
        assert _polls(sandbox) == polls_at_cancel


async def test_the_timeout_stays_under_common_client_limits(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    timeout = tools["refresh_source_tables"].input_schema["properties"]["timeout_seconds"]
    assert timeout["maximum"] < 60
    assert timeout["default"] < 60
