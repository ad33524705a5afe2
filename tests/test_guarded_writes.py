"""Guarded writes: read-only mode, tool allow and deny lists, and the human's say on deletes."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult

from census_mcp.server import build_server
from census_mcp.settings import Settings, SettingsError
from census_mcp.tools import ALL_TOOLS
from tests.conftest import Sandbox
from tests.helpers import call_error, call_ok
from tests.test_cli import _run

pytestmark = pytest.mark.anyio

READ_TOOLS = {tool.name for tool in ALL_TOOLS if tool.read_only}
WRITE_TOOLS = {tool.name for tool in ALL_TOOLS if not tool.read_only}
POSTGRES = {"hostname": "h", "port": 5432, "user": "u", "password": "p", "database": "d"}


async def _listed(settings: Settings) -> set[str]:
    async with Client(build_server(settings)) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def test_read_only_lists_and_serves_only_reads(sandbox: Sandbox) -> None:
    settings = sandbox.settings(read_only=True)
    assert await _listed(settings) == READ_TOOLS
    async with Client(build_server(settings)) as client:
        for tool, arguments in [
            ("create_source", {"type": "postgres", "credentials": POSTGRES}),
            ("update_source", {"source_id": 1, "label": "x"}),
            ("delete_source", {"source_id": 1, "confirm_name": sandbox.workspace.sources[1]["name"]}),
            ("refresh_source_tables", {"source_id": 1}),
        ]:
            assert await call_error(client, tool, arguments) == (
                f"{tool} is turned off by --read-only (CENSUS_MCP_READ_ONLY): this server only reads."
            )
        await call_ok(client, "list_sources")
    assert all(r.method == "GET" for r in sandbox.workspace.requests)
    assert 1 in sandbox.workspace.sources


async def test_allow_and_deny_lists(sandbox: Sandbox) -> None:
    assert await _listed(sandbox.settings(tools=("list_sources", "get_source"))) == {
        "list_sources",
        "get_source",
    }
    denied = await _listed(sandbox.settings(exclude_tools=("delete_source", "update_source")))
    assert denied == READ_TOOLS | WRITE_TOOLS - {"delete_source", "update_source"}
    both = sandbox.settings(read_only=True, tools=("list_sources", "create_source"))
    assert await _listed(both) == {"list_sources"}


def test_an_unknown_tool_name_fails_start_up() -> None:
    with pytest.raises(SettingsError, match="delete_sources"):
        build_server(Settings(sandbox=True, exclude_tools=("delete_sources",)))
    done = _run("--sandbox", "--exclude-tools", "delete_sources", "tools")
    assert done.returncode == 2
    assert "delete_source" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_read_only_from_the_environment() -> None:
    done = _run("tools", CENSUS_MCP_SANDBOX="1", CENSUS_MCP_READ_ONLY="1")
    assert done.returncode == 0, done.stderr
    assert {line.split()[0] for line in done.stdout.splitlines()} == READ_TOOLS


class Human:
    """An elicitation callback: answers as told, and remembers what it was asked."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = content
        self.asked: list[str] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params.message)
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]


def _deletes(sandbox: Sandbox) -> int:
    return sum(r.method == "DELETE" for r in sandbox.workspace.requests)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_human_who_accepts_lets_the_delete_through(sandbox: Sandbox, mode: str) -> None:
    human = Human("accept", {"confirm": True})
    name = sandbox.workspace.sources[4]["name"]
    async with Client(build_server(sandbox.settings()), elicitation_callback=human, mode=mode) as client:
        result = await call_ok(client, "delete_source", {"source_id": 4, "confirm_name": name})
    assert result.structured_content == {"deleted": True, "id": 4, "name": name}
    assert 4 not in sandbox.workspace.sources
    (question,) = human.asked
    assert f'#4 "{name}"' in question
    assert "cannot be undone" in question


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("action", "content", "said"),
    [
        ("decline", None, "declined"),
        ("cancel", None, "cancelled"),
        ("accept", {"confirm": False}, "did not confirm"),
    ],
)
async def test_a_human_who_says_no_stops_the_delete(
    sandbox: Sandbox, mode: str, action: str, content: dict[str, Any] | None, said: str
) -> None:
    human = Human(action, content)
    name = sandbox.workspace.sources[4]["name"]
    async with Client(build_server(sandbox.settings()), elicitation_callback=human, mode=mode) as client:
        text = await call_error(client, "delete_source", {"source_id": 4, "confirm_name": name})
    assert "Nothing was deleted" in text
    assert said in text
    assert 4 in sandbox.workspace.sources
    assert _deletes(sandbox) == 0
    assert len(human.asked) == 1


async def test_the_human_is_not_asked_about_the_wrong_name(sandbox: Sandbox) -> None:
    human = Human("accept", {"confirm": True})
    async with Client(build_server(sandbox.settings()), elicitation_callback=human) as client:
        text = await call_error(client, "delete_source", {"source_id": 4, "confirm_name": "not its name"})
    assert "confirm_name does not match" in text
    assert human.asked == []
    assert _deletes(sandbox) == 0


async def test_clients_without_elicitation_keep_the_name_guard(client: Client, sandbox: Sandbox) -> None:
    name = sandbox.workspace.sources[4]["name"]
    result = await call_ok(client, "delete_source", {"source_id": 4, "confirm_name": name})
    assert result.structured_content == {"deleted": True, "id": 4, "name": name}


NEAR_MISSES = {
    "upper-case": str.upper,
    "lower-case": str.lower,
    "padded": lambda name: f" {name} ",
    "new-line": lambda name: name + "\n",
}


@pytest.mark.parametrize("near_miss", NEAR_MISSES)
async def test_a_name_that_is_only_close_deletes_nothing(sandbox: Sandbox, near_miss: str) -> None:
    """confirm_name is the exact name: another case, or stray spaces, may well name another source."""
    name = sandbox.workspace.sources[4]["name"]
    close = NEAR_MISSES[near_miss](name)
    assert close != name
    human = Human("accept", {"confirm": True})
    async with Client(build_server(sandbox.settings()), elicitation_callback=human) as asking:
        asked = await call_error(asking, "delete_source", {"source_id": 4, "confirm_name": close})
    async with Client(build_server(sandbox.settings())) as not_asking:
        unasked = await call_error(not_asking, "delete_source", {"source_id": 4, "confirm_name": close})
    assert "confirm_name does not match" in asked
    assert "confirm_name does not match" in unasked
    assert human.asked == []
    assert 4 in sandbox.workspace.sources
    assert _deletes(sandbox) == 0
