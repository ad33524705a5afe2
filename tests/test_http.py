"""The streamable HTTP transport: bearer auth in both modes, per-user passthrough, the health
check, DNS-rebinding protection, and the ASGI factory, over real loopback sockets."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from census_mcp import __version__
from census_mcp.asgi import worker_count
from census_mcp.http import create_http_app
from census_mcp.settings import SANDBOX_PER_PROCESS, Settings, SettingsError
from tests.conftest import Sandbox, running_sandbox, serve_on_loopback
from tests.helpers import call_error, call_ok
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "mcp-shared-7d41f0-a9c3e52b18f4d706"
ALICE = "secret-token:alice-workspace"
MALLORY = "secret-token:mallory-no-access"
PASSTHROUGH_TOKENS = {"v1": (ALICE, MALLORY), "v2": ("alice-personal-access-token", "mallory-no-access-pat")}


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The HTTP app on a loopback port; yields its MCP URL."""
    with serve_on_loopback(create_http_app(settings), lifespan="on") as root:
        yield f"{root}/mcp"


@asynccontextmanager
async def connected(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


def _shared(sandbox: Sandbox, **overrides: Any) -> Settings:
    return sandbox.settings(transport="http", auth_token=SecretStr(AUTH_TOKEN), **overrides)


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_shared_token_mode_serves_both_protocol_eras(sandbox: Sandbox, mode: str, version: str) -> None:
    with serving(_shared(sandbox)) as url:
        async with connected(url, AUTH_TOKEN, mode) as client:
            assert client.protocol_version == version
            assert len((await client.list_tools()).tools) == 10
            result = await call_ok(client, "list_sources", {"test_status": "failed"})
    assert result.structured_content is not None
    failing = sum(s["last_test_succeeded"] is False for s in sandbox.workspace.sources.values())
    assert result.structured_content["total"] == failing


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("auth", ["token", "passthrough"])
async def test_an_unknown_tool_gets_did_you_mean_over_http_too(
    sandbox: Sandbox, mode: str, auth: str
) -> None:
    """As over stdio and on the command line: the closest names, and where the list is."""
    settings = _shared(sandbox, auth=auth, read_only=True)
    token = AUTH_TOKEN if auth == "token" else sandbox.token
    with serving(settings) as url:
        async with connected(url, token, mode) as client:
            misspelt = await call_error(client, "get_sources", {})
            turned_off = await call_error(client, "delete_source", {"source_id": 1, "confirm_name": "x"})
    assert misspelt.startswith("No tool has that name. Did you mean get_source or list_sources")
    assert "census-mcp tools" in misspelt
    assert (
        turned_off
        == "delete_source is turned off by --read-only (CENSUS_MCP_READ_ONLY): this server only reads."
    )
    assert not any(request.method == "DELETE" for request in sandbox.workspace.requests)


async def test_requests_without_the_right_token_get_401_with_a_challenge(sandbox: Sandbox) -> None:
    with serving(_shared(sandbox)) as url:
        async with httpx2.AsyncClient() as http:
            missing = await http.post(url, json={})
            wrong = await http.post(url, json={}, headers={"Authorization": "Bearer not-the-token"})
            basic = await http.post(url, json={}, headers={"Authorization": f"Basic {AUTH_TOKEN}"})
            health = await http.get(url.removesuffix("/mcp") + "/healthz")
    assert missing.status_code == wrong.status_code == basic.status_code == 401
    # RFC 6750: a missing token gets the bare challenge, a wrong one says why, for clients to read.
    assert missing.headers["www-authenticate"] == 'Bearer realm="census-mcp"'
    assert missing.json() == {
        "error": "unauthorized",
        "error_description": "Send your token as `Authorization: Bearer <token>`.",
    }
    assert wrong.headers["www-authenticate"] == (
        'Bearer realm="census-mcp", error="invalid_token", '
        'error_description="The bearer token was not accepted."'
    )
    assert wrong.json() == {
        "error": "invalid_token",
        "error_description": "The bearer token was not accepted.",
    }
    assert basic.json() == missing.json()
    assert AUTH_TOKEN not in wrong.text
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}
    assert sandbox.workspace.requests == []


async def test_a_token_that_is_only_close_to_the_right_one_is_refused(sandbox: Sandbox) -> None:
    """A prefix or an extension of the shared token is a different token: guessing it piece by
    piece, or padding it, must get nowhere."""
    near_misses = [AUTH_TOKEN[:1], AUTH_TOKEN[:-1], AUTH_TOKEN + "0", AUTH_TOKEN * 2, AUTH_TOKEN.upper()]
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with serving(_shared(sandbox)) as url:
        async with httpx2.AsyncClient() as http:
            answers = {
                token: await http.post(url, json=ping, headers={"Authorization": f"Bearer {token}"})
                for token in [*near_misses, AUTH_TOKEN]
            }
    for token in near_misses:
        assert answers[token].status_code == 401, f"{token!r} was let in"
        assert answers[token].json()["error"] == "invalid_token"
    assert answers[AUTH_TOKEN].status_code != 401


async def test_passthrough_uses_each_callers_own_token_for_that_request_alone(api_version: str) -> None:
    """Each user's own workspace token on v1, their own personal access token on v2."""
    alice_token, mallory_token = PASSTHROUGH_TOKENS[api_version]
    with running_sandbox(api_version, tokens=(alice_token,), forbidden_tokens=(mallory_token,)) as sandbox:
        settings = sandbox.settings(transport="http", auth="passthrough", token=None)
        with serving(settings) as url:
            async with connected(url, alice_token) as alice, connected(url, mallory_token) as mallory:
                first = await call_ok(alice, "list_sources")
                # Mallory asks for the same list right after: the cache is per token, and
                # Census refuses her token, so she must not see Alice's list.
                refused = await call_error(mallory, "list_sources")
                again = await call_ok(alice, "list_sources")
                refused_detail = await call_error(mallory, "get_source", {"source_id": 1})
            async with httpx2.AsyncClient() as http:
                nobody = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert nobody.status_code == 401
    assert "lacks access" in refused
    assert "lacks access" in refused_detail
    assert first.structured_content is not None
    assert again.structured_content is not None
    assert again.structured_content["fetched_at"] == first.structured_content["fetched_at"]
    assert alice_token not in refused + refused_detail
    list_reads = [r for r in sandbox.workspace.requests if r.path.endswith("/sources")]
    # Alice: pages 1 and 2 once (then her cache); Mallory: refused on her own reads.
    assert len([r for r in list_reads if r.reached_api]) == 2


async def test_dns_rebinding_protection_refuses_foreign_hosts_unless_allowed(sandbox: Sandbox) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Authorization": f"Bearer {AUTH_TOKEN}", "Host": "attacker.example"}
    with serving(_shared(sandbox)) as url:
        async with httpx2.AsyncClient() as http:
            refused = await http.post(url, json=request, headers=headers)
    assert refused.status_code in (403, 421)
    with serving(_shared(sandbox, allowed_hosts=("attacker.example",))) as url:
        async with httpx2.AsyncClient() as http:
            allowed = await http.post(url, json=request, headers=headers)
    assert allowed.status_code not in (403, 421)


async def test_local_clients_are_served_by_every_loopback_name(sandbox: Sandbox) -> None:
    """DNS-rebinding protection refuses foreign names, never the machine's own: 127.0.0.1, localhost
    and [::1], with a port or without, as Host and as the Origin of a local browser client."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with serving(_shared(sandbox)) as url:
        port = url.split(":")[2].split("/")[0]
        names = ["127.0.0.1", "localhost", "[::1]"]
        hosts = [*names, *(f"{name}:{port}" for name in names)]
        origins = [f"http://{name}:{port}" for name in names]
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}) as http:
            by_host = {host: await http.post(url, json=ping, headers={"Host": host}) for host in hosts}
            by_origin = {
                origin: await http.post(url, json=ping, headers={"Origin": origin}) for origin in origins
            }
            foreign = await http.post(url, json=ping, headers={"Origin": "http://attacker.example"})
    assert {host: answer.status_code for host, answer in by_host.items()} == dict.fromkeys(hosts, 200)
    assert {origin: answer.status_code for origin, answer in by_origin.items()} == dict.fromkeys(origins, 200)
    assert foreign.status_code == 403


async def test_allowed_origins_admit_a_browser_client_of_that_origin(sandbox: Sandbox) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Authorization": f"Bearer {AUTH_TOKEN}", "Origin": "https://console.example.com"}
    with serving(_shared(sandbox, allowed_origins=("https://console.example.com",))) as url:
        async with httpx2.AsyncClient() as http:
            allowed = await http.post(url, json=ping, headers=headers)
    assert allowed.status_code == 200


async def test_any_request_is_answered_without_a_session(sandbox: Sandbox) -> None:
    """Stateless: a request that no initialize came before, and that carries no session id, is
    answered, so that any worker behind a load balancer can take any request."""
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
    headers = {
        "Authorization": f"Bearer {AUTH_TOKEN}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    with serving(_shared(sandbox)) as url:
        async with httpx2.AsyncClient() as http:
            answer = await http.post(url, json=request, headers=headers)
    assert answer.status_code == 200, answer.text
    assert "list_sources" in answer.text
    assert "mcp-session-id" not in answer.headers


async def test_no_auth_on_loopback_serves_without_a_token(sandbox: Sandbox) -> None:
    with serving(sandbox.settings(transport="http", no_auth=True)) as url:
        async with connected(url, None) as client:
            result = await call_ok(client, "get_source", {"source_id": 2})
    assert result.structured_content is not None
    assert result.structured_content["id"] == 2


async def test_passthrough_refuses_an_oversized_token_at_the_door(api_version: str) -> None:
    """A token longer than any real one (4,096 characters) never reaches Census; one at the bound does."""
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with running_sandbox(api_version) as sandbox:
        settings = sandbox.settings(transport="http", auth="passthrough", token=None)
        with serving(settings) as url:
            async with httpx2.AsyncClient() as http:
                oversized = await http.post(url, json=ping, headers={"Authorization": f"Bearer {'t' * 4097}"})
                at_the_bound = await http.post(
                    url, json=ping, headers={"Authorization": f"Bearer {'t' * 4096}"}
                )
    assert oversized.status_code == 401
    assert oversized.json()["error"] == "invalid_token"
    assert at_the_bound.status_code == 200


def test_http_without_auth_is_refused_off_loopback() -> None:
    with pytest.raises(SettingsError, match="CENSUS_MCP_AUTH_TOKEN"):
        Settings(sandbox=True, transport="http").require_credentials(serving_http=True)
    everywhere = "0.0.0.0"  # noqa: S104 - the point: no auth there is refused
    with pytest.raises(SettingsError, match=f"refused on {re.escape(everywhere)}"):
        Settings(sandbox=True, transport="http", host=everywhere, no_auth=True).require_credentials(
            serving_http=True
        )
    Settings(sandbox=True, transport="http", no_auth=True).require_credentials(serving_http=True)
    Settings(transport="http", auth="passthrough").require_credentials(serving_http=True)


def test_the_asgi_factory_takes_its_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad setting stops the worker with one line, and the status (3) on which uvicorn's and
    gunicorn's supervisors stop rather than start it again."""
    from census_mcp.asgi import create_app

    for name in ("CENSUS_API_TOKEN", "CENSUS_MCP_AUTH_TOKEN", "CENSUS_MCP_NO_AUTH", "CENSUS_MCP_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CENSUS_MCP_SANDBOX", "1")
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert stopped.value.code == 3
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert said.startswith("census-mcp: HTTP needs auth: set CENSUS_MCP_AUTH_TOKEN")
    monkeypatch.setenv("CENSUS_MCP_AUTH_TOKEN", AUTH_TOKEN)
    assert callable(create_app())


def test_the_sandbox_is_refused_where_workers_or_a_shared_cache_would_mix_several() -> None:
    """Each process keeps a sandbox of its own: under several workers, or with a shared cache, one
    line says to serve one sandbox for all of them."""
    environment = _environment(CENSUS_MCP_SANDBOX="1", CENSUS_MCP_AUTH_TOKEN=AUTH_TOKEN)
    uvicorn = [sys.executable, "-m", "uvicorn", "census_mcp.asgi:create_app", "--factory"]
    address = ["--host", "127.0.0.1", "--port", "0"]
    # uvicorn stops, rather than start the workers again and again (or the run would time out).
    workers = subprocess.run(
        [*uvicorn, *address, "--workers", "2"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert f"census-mcp: {SANDBOX_PER_PROCESS}" in workers.stderr.splitlines()
    assert "Traceback" not in workers.stderr
    shared = subprocess.run(
        [_console_script(), "--sandbox", "--transport", "http", "--cache-url", "redis://127.0.0.1:1/0"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (shared.returncode, shared.stderr) == (2, f"census-mcp: {SANDBOX_PER_PROCESS}\n")
    assert "python -m census_mcp.sandbox" in SANDBOX_PER_PROCESS


@pytest.mark.parametrize(
    ("argv", "environ", "workers"),
    [
        (["uvicorn", "app", "--workers", "4"], {}, 4),
        (["uvicorn", "app", "--workers=3"], {}, 3),
        (["gunicorn", "app()", "-w", "2"], {}, 2),
        (["gunicorn", "app()", "-w5"], {}, 5),
        (["gunicorn", "app()"], {"GUNICORN_CMD_ARGS": "--workers 6"}, 6),
        (["uvicorn", "app"], {"WEB_CONCURRENCY": "7"}, 7),
        (["uvicorn", "app", "--workers", "2"], {"WEB_CONCURRENCY": "7"}, 2),
        (["uvicorn", "app", "--ws", "auto"], {}, 1),
        (["uvicorn", "app", "--workers", "many"], {}, 1),
        (["uvicorn", "app"], {"WEB_CONCURRENCY": "some"}, 1),
        (["uvicorn", "app"], {}, 1),
    ],
)
def test_the_worker_count_is_read_from_the_servers_command_line_or_environment(
    argv: list[str], environ: dict[str, str], workers: int
) -> None:
    assert worker_count(argv, environ) == workers


async def test_the_factory_app_serves_over_loopback(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox
) -> None:
    from census_mcp.asgi import create_app

    monkeypatch.setenv("CENSUS_API_TOKEN", sandbox.token)
    monkeypatch.setenv("CENSUS_API_VERSION", sandbox.api_version)
    monkeypatch.setenv("CENSUS_API_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("CENSUS_MCP_AUTH_TOKEN", AUTH_TOKEN)
    with serve_on_loopback(create_app(), lifespan="on") as root:
        async with connected(f"{root}/mcp", AUTH_TOKEN) as client:
            result = await call_ok(client, "get_source", {"source_id": 2})
    assert result.structured_content is not None
    assert result.structured_content["id"] == 2


async def test_a_plain_get_of_mcp_is_refused_at_once_not_left_hanging(sandbox: Sandbox) -> None:
    """A stateless server pushes nothing, so it offers no GET stream: 405 with Allow, as the spec allows."""
    with serving(_shared(sandbox)) as url:
        async with httpx2.AsyncClient(timeout=5) as http:
            anonymous = await http.get(url, headers={"Accept": "text/event-stream"})
            signed_in = await http.get(
                url, headers={"Accept": "text/event-stream", "Authorization": f"Bearer {AUTH_TOKEN}"}
            )
        # Both eras of the SDK's client still work against it.
        for mode in ("auto", "legacy"):
            async with connected(url, AUTH_TOKEN, mode) as client:
                await call_ok(client, "get_source", {"source_id": 2})
    for answer in (anonymous, signed_in):
        assert answer.status_code == 405
        assert answer.headers["allow"] == "POST"
        assert answer.headers["content-type"].startswith("application/json")
        refused = {"error": "method_not_allowed", "error_description": "POST MCP messages to /mcp."}
        assert answer.json() == refused


def test_serving_on_a_busy_port_says_so_in_one_line_and_never_claims_to_serve() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [_console_script(), "--sandbox", "--transport", "http", "--no-auth", "--port", str(port)],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert done.stderr == (
        f"census-mcp: port {port} on 127.0.0.1 is in use by another program: pass --port (CENSUS_MCP_PORT) "
        "with a free one.\n"
    )
    assert "serving" not in done.stderr


def test_serving_is_said_once_the_port_is_bound() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [_console_script(), "--sandbox", "--transport", "http", "--no-auth", "--port", str(port)],
        env=_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        said = server.stderr.readline()
        assert said == f"census-mcp: serving MCP at http://127.0.0.1:{port}/mcp\n"
        # Said only when a connection can be made at once.
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    finally:
        server.terminate()
        server.wait(timeout=10)
