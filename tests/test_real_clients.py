"""Real MCP clients against the real server: the MCP Inspector CLI (Node, not our SDK) launching it
over stdio and calling it over streamable HTTP with a bearer token, in both protocol eras, and
the SDK's own HTTP client, so interoperability is proven by a client we did not write."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from census_mcp.sandbox.seed import build_workspace
from tests.helpers import call_ok
from tests.test_contract import EXPECTED, READ_ONLY
from tests.test_stdio import _console_script, _environment

ROOT = Path(__file__).resolve().parents[1]
# What `census-mcp --sandbox` serves: 60 sources from seed 7, by id.
SOURCES = {source["id"]: source for source in build_workspace(60, 7)}
FAILING_IDS = {source_id for source_id, source in SOURCES.items() if source["last_test_succeeded"] is False}
pytestmark = pytest.mark.xdist_group("real-clients")  # one census-mcp over HTTP for the module
TOKEN = "real-clients-token-5b2e9f70c4a1d836"
# The Inspector CLI's exit codes (EXIT_CODES in its cli build) for an isError result and a refused login.
TOOL_ERROR_EXIT = 5
AUTH_REQUIRED_EXIT = 3
# `legacy` is the 2025-11-25 initialize handshake; `modern` pins 2026-07-28 with no fallback.
ERAS = ["legacy", "modern"]


NODE_BIN = ROOT / "node_modules" / ".bin"


def node_tool(name: str) -> str:
    """A Node CLI pinned in package-lock.json; scripts/check installs them with `npm ci`."""
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm ci` in {ROOT} (scripts/check does)")
    return str(path)


def node_environment(**extra: str) -> dict[str, str]:
    """The environment for a pinned Node CLI: the Node.js package-lock.json pins (which the tools
    declare) first on PATH, whatever Node the machine has."""
    return _environment(PATH=f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)


@dataclass
class Inspector:
    """The MCP Inspector CLI aimed at one server: a command line (stdio) or a URL (HTTP)."""

    target: list[str]
    home: Path
    options: tuple[str, ...] = ()

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [node_tool("mcp-inspector"), "--cli", *self.options, "--format", "json", *arguments]
        return subprocess.run(
            [*command, "--", *self.target],
            # The Inspector keeps a catalog under ~/.mcp-inspector: keep it out of the real home.
            env=node_environment(HOME=str(self.home)),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def result(self, *arguments: str, exit_code: int = 0) -> dict[str, Any]:
        done = self.run(*arguments)
        assert done.returncode == exit_code, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)["result"]
        return result

    def call(self, tool: str, arguments: dict[str, Any], exit_code: int = 0) -> dict[str, Any]:
        as_json = json.dumps(arguments)
        method = ("--method", "tools/call", "--tool-name", tool, "--tool-args-json", as_json)
        return self.result(*method, exit_code=exit_code)


def _lists_and_calls_tools(inspector: Inspector) -> None:
    """What a user does first in any client: list the tools, ask a question, look one up, mistype."""
    # --strict: exit 6 if any tool schema has an error-severity portability problem.
    done = inspector.run("--method", "tools/list", "--strict")
    assert done.returncode == 0, done.stderr
    # The strict portability check prints its findings, errors and warnings alike, on stderr.
    assert "Warning" not in done.stderr, done.stderr
    assert "Error" not in done.stderr, done.stderr
    listed = json.loads(done.stdout)["result"]
    assert [tool["name"] for tool in listed["tools"]] == EXPECTED

    failing = inspector.call("list_sources", {"test_status": "failed"})
    assert failing["isError"] is False
    assert failing["content"][0]["text"].startswith(f"{len(FAILING_IDS)} of {len(SOURCES)} sources match")
    assert {row["id"] for row in failing["structuredContent"]["sources"]} == FAILING_IDS

    source = inspector.call("get_source", {"source_id": 2})
    assert source["structuredContent"]["id"] == 2
    assert source["structuredContent"]["name"] == SOURCES[2]["name"]

    missing = inspector.call("get_source", {"source_id": 99999}, exit_code=TOOL_ERROR_EXIT)
    assert missing["isError"] is True
    assert "No source with id 99999" in missing["content"][0]["text"]


@pytest.mark.parametrize("era", ERAS)
def test_inspector_launches_the_server_over_stdio(era: str, tmp_path: Path) -> None:
    """The Inspector starts the console script itself, as Claude Desktop or Cursor would."""
    _lists_and_calls_tools(Inspector([_console_script(), "--sandbox"], tmp_path, ("--protocol-era", era)))


def test_the_inspector_launching_a_misconfigured_server_lists_the_tools_and_gets_the_advice(
    tmp_path: Path,
) -> None:
    """No token: the server still starts, the settings it could read (--read-only) still choose the
    tools listed, and a call answers with what to set (tests/test_stdio.py has the SDK's client)."""
    inspector = Inspector([_console_script(), "--read-only"], tmp_path)
    listed = inspector.result("--method", "tools/list")
    assert [tool["name"] for tool in listed["tools"]] == [name for name in EXPECTED if name in READ_ONLY]
    answer = inspector.call("get_source", {"source_id": 2}, exit_code=TOOL_ERROR_EXIT)
    assert answer["isError"] is True
    assert "No Census API token" in answer["content"][0]["text"]
    assert "census-mcp doctor" in answer["content"][0]["text"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("http") / "stderr.txt"
    with census_mcp_over_http(log, TOKEN) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@contextmanager
def census_mcp_over_http(log: Path, token: str, *options: str) -> Iterator[int]:
    """`census-mcp --transport http --sandbox` as its own process, its stderr in `log`, up once
    /healthz answers; yields its port."""
    with census_mcp_http_process(log, token, *options) as (_, port):
        yield port


@contextmanager
def census_mcp_http_process(
    log: Path, token: str, *options: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """As census_mcp_over_http, yielding the process too. It binds port 0, and says which port
    it got in its first line ("serving MCP at ..."), so no other test can take that port first."""
    address = ["--host", "127.0.0.1", "--port", "0"]
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [_console_script(), "--transport", "http", *address, "--sandbox", *options],
            env=_environment(CENSUS_MCP_AUTH_TOKEN=token),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        port = _served_port(server, log)
        _wait_until_healthy(f"http://127.0.0.1:{port}", server, log)
        yield server, port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _served_port(server: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        if found := re.search(r"serving MCP at http://127\.0\.0\.1:(\d+)/mcp", log.read_text()):
            return int(found[1])
        time.sleep(0.05)
    pytest.fail(f"the HTTP server did not say where it serves (exit {server.poll()}): {log.read_text()}")


def _wait_until_healthy(root: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx2.get(f"{root}/healthz", timeout=1, trust_env=False).json()["status"] == "ok":
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the HTTP server did not become healthy (exit {server.poll()}): {log.read_text()}")


def _over_http(url: str, home: Path, *options: str) -> Inspector:
    # --stored-auth-only: never start an interactive OAuth login, fail instead.
    return Inspector([url], home, ("--transport", "http", "--stored-auth-only", *options))


@pytest.mark.parametrize("era", ERAS)
def test_inspector_over_http_with_the_bearer_token(http_url: str, era: str, tmp_path: Path) -> None:
    auth = f"Authorization: Bearer {TOKEN}"
    _lists_and_calls_tools(_over_http(http_url, tmp_path, "--header", auth, "--protocol-era", era))


@pytest.mark.parametrize(
    ("headers", "refusal"),
    [
        pytest.param((), "Send your token as `Authorization: Bearer <token>`.", id="no-header"),
        pytest.param(
            ("--header", "Authorization: Bearer not-the-token"),
            "The bearer token was not accepted.",
            id="wrong-token",
        ),
    ],
)
def test_inspector_over_http_is_refused_without_the_token(
    http_url: str, headers: tuple[str, ...], refusal: str, tmp_path: Path
) -> None:
    """The refusal reaches the client as our 401, which the Inspector reports as a login to do."""
    done = _over_http(http_url, tmp_path, *headers).run("--method", "tools/list")
    assert done.returncode == AUTH_REQUIRED_EXIT
    assert done.stdout == ""
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == "auth_required"
    assert refusal in error["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_sdk_client_over_http_in_both_eras(http_url: str, mode: str, version: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, trust_env=False) as http,
        Client(streamable_http_client(http_url, http_client=http), mode=mode) as client,
    ):
        assert client.protocol_version == version
        listed = await client.list_tools()
        assert [tool.name for tool in listed.tools] == EXPECTED
        result = await call_ok(client, "list_sources", {"test_status": "failed"})
        assert result.structured_content is not None
        assert {row["id"] for row in result.structured_content["sources"]} == FAILING_IDS
