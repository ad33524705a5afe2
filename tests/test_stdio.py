"""The server as an MCP client launches it: `census-mcp` as a subprocess over stdio."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from mcp import Client, StdioServerParameters

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


def test_without_a_token_it_exits_with_one_clear_line() -> None:
    done = subprocess.run(
        [_console_script()],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "CENSUS_API_TOKEN" in lines[0]
    assert "--sandbox" in lines[0]


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
