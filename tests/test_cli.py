"""The command line: `call` runs the main job through the real server; `--help` documents everything."""

from __future__ import annotations

import json
import subprocess

import pytest

from census_mcp.settings import OPTIONS
from tests.test_stdio import _console_script, _environment


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_console_script(), *args], env=_environment(**env), capture_output=True, text=True, timeout=60
    )


def test_call_on_the_sandbox_names_the_failing_sources() -> None:
    done = _run("--sandbox", "call", "list_sources", '{"test_status": "failed", "limit": 100}', "--json")
    assert done.returncode == 0, done.stderr
    text, _, structured = done.stdout.partition("\n{")
    data = json.loads("{" + structured)
    assert data["total"] == len(data["sources"]) > 0
    assert f"{data['total']} of 60 sources match (last test failed)" in text
    for item in data["sources"]:
        assert f"#{item['id']} {json.dumps(item['name'])}" in text
    assert len(done.stdout.encode()) < 16 * 1024


def test_call_reports_a_tool_error_with_exit_code_1() -> None:
    done = _run("--sandbox", "call", "get_source", '{"source_id": 99999}')
    assert done.returncode == 1
    assert "No source with id 99999" in done.stderr


@pytest.mark.parametrize("bad", ["{oops", "[1, 2]"])
def test_call_refuses_arguments_that_are_not_a_json_object(bad: str) -> None:
    done = _run("--sandbox", "call", "list_sources", bad)
    assert done.returncode == 2
    assert "JSON" in done.stderr


def test_sandbox_size_and_env_switch() -> None:
    done = _run("call", "list_sources", "--json", CENSUS_MCP_SANDBOX="1", CENSUS_MCP_SANDBOX_SIZE="250")
    assert done.returncode == 0, done.stderr
    assert "250 of 250 sources match" in done.stdout


def test_help_documents_every_flag_and_its_environment_variable() -> None:
    done = _run("--help")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    for option in OPTIONS:
        assert option.flag in flat
        assert option.env in flat
    assert "call TOOL" in flat
