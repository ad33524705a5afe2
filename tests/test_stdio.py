"""The server as an MCP client launches it: `census-mcp` as a subprocess over stdio."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from census_mcp.server import result_text
from tests.conftest import Sandbox
from tests.helpers import call_ok
from tests.test_contract import EXPECTED

pytestmark = pytest.mark.anyio


def _console_script() -> str:
    path = shutil.which("census-mcp", path=os.path.dirname(sys.executable))
    assert path, "census-mcp must be installed as a console script"
    return path


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without its Census settings; the sandbox keeps nothing between runs
    (a test that wants it kept names a file)."""
    keep = {key: value for key, value in os.environ.items() if not key.startswith("CENSUS_")}
    return keep | {"CENSUS_MCP_SANDBOX_STATE": "off"} | extra


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_server_lists_and_calls_tools(sandbox: Sandbox, mode: str) -> None:
    params = StdioServerParameters(
        command=_console_script(),
        args=["--log-level", "DEBUG"],
        env=_environment(
            CENSUS_API_TOKEN=sandbox.token,
            CENSUS_API_VERSION=sandbox.api_version,
            CENSUS_API_BASE_URL=sandbox.base_url,
        ),
    )
    async with Client(params, mode=mode) as client:
        listed = await client.list_tools()
        assert [tool.name for tool in listed.tools] == EXPECTED
        result = await call_ok(client, "list_sources", {"test_status": "failed"})
        failing = [s for s in sandbox.workspace.sources.values() if s["last_test_succeeded"] is False]
        assert result.structured_content is not None
        assert result.structured_content["total"] == len(failing)
        assert f"{len(failing)} of 60 sources match" in result_text(result)
    assert any(r.path.endswith("/sources") for r in sandbox.workspace.requests)


def launched(*args: str, stdin: int = subprocess.DEVNULL, **env: str) -> subprocess.CompletedProcess[str]:
    """`census-mcp ARGS` run to its end with these Census settings, stdin from `stdin` (no input)."""
    return subprocess.run(
        [_console_script(), *args],
        env=_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=stdin,
    )


def _refusal_lines(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines


def test_run_by_hand_in_a_terminal_without_a_token_it_stops_at_once_with_one_clear_line() -> None:
    """Stdin a terminal: a person typed the command, and reads the line."""
    keyboard, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [_console_script()],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=terminal,
        )
    finally:
        os.close(keyboard)
        os.close(terminal)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = _refusal_lines(done.stderr)
    assert "CENSUS_API_TOKEN" in line
    assert "--sandbox" in line


UNWORKABLE = [
    pytest.param({}, "No Census API token: set CENSUS_API_TOKEN", id="no-token"),
    pytest.param(
        {"CENSUS_API_TOKEN": "secret-token:x", "CENSUS_API_BASE_URL": "app.getcensus.com/api/v1"},
        "--base-url (CENSUS_API_BASE_URL) must start with https://",
        id="base-url",
    ),
    pytest.param(
        {"CENSUS_API_TOKEN": "secret-token:pasted with a space"},
        "CENSUS_API_TOKEN (--token) cannot be sent in an HTTP header",
        id="token",
    ),
    pytest.param(
        {"CENSUS_API_TOKEN": "pat", "CENSUS_API_VERSION": "v3"}, "Invalid --api-version", id="version"
    ),
]


@pytest.mark.parametrize(("env", "problem"), UNWORKABLE)
async def test_a_misconfigured_server_a_client_launched_lists_its_tools_and_every_call_says_what_to_set(
    env: dict[str, str], problem: str, tmp_path: Path
) -> None:
    """A client shows a server that exits as "disconnected", with the reason in a log few open: so the
    server stays up, and each call tells the user what to set, where, and how to check."""
    params = StdioServerParameters(command=_console_script(), args=[], env=_environment(**env))
    errlog = tmp_path / "stderr.txt"
    with errlog.open("w") as stderr:
        async with Client(stdio_client(params, errlog=stderr)) as client:
            assert problem in (client.instructions or "")
            listed = await client.list_tools()
            assert [tool.name for tool in listed.tools] == EXPECTED
            for tool, arguments in (
                ("list_sources", {}),
                ("delete_source", {"source_id": 1, "confirm_name": "x"}),
            ):
                result = await client.call_tool(tool, arguments)
                assert result.is_error
                said = result_text(result)
                assert said.startswith(f"census-mcp is not configured, so it cannot call Census: {problem}")
                assert "in your MCP client's configuration (claude_desktop_config.json" in said
                assert "run `census-mcp doctor` in a terminal with that same environment" in said
                assert "pasted with a space" not in said
    # Its stderr, which the client keeps in its log, says it in one line, as before.
    [line] = _refusal_lines(errlog.read_text())
    assert line.startswith(f"census-mcp: {problem}")


def test_without_a_terminal_the_server_still_says_it_in_one_line_and_http_still_refuses_to_start() -> None:
    served = launched()
    # The client hung up at once (no input): the server that answered meanwhile ends, not 0.
    assert served.returncode == 2
    assert served.stdout == ""
    assert "No Census API token" in _refusal_lines(served.stderr)[0]
    http = launched("--transport", "http", "--sandbox")
    assert http.returncode == 2
    assert "HTTP needs auth" in _refusal_lines(http.stderr)[0]


def test_python_dash_m_works_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "census_mcp", "--sandbox", "tools"],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == EXPECTED
