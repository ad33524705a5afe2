"""Shared fixtures: the sandbox (and scripted fakes) served on a real loopback socket."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import uvicorn
from hypothesis import settings as hypothesis_settings
from mcp import Client
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from census_mcp.census.api import API_VERSIONS as API_VERSION_MAPPINGS
from census_mcp.census.client import CensusClient
from census_mcp.sandbox import GROUPS, SANDBOX_TOKENS, SandboxConfig, Workspace, create_sandbox_app
from census_mcp.server import build_server
from census_mcp.settings import Settings

# CI explores the same examples every run, so a landing never hangs on chance; local runs
# explore new ones each time.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# A sandbox served in-process from the environment (the ASGI factory) neither reads nor writes the
# state a developer keeps in their user cache, which tests running at once would share.
os.environ["CENSUS_MCP_SANDBOX_STATE"] = "off"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _PromptServer(uvicorn.Server):
    """uvicorn, stopped at once. Its own loop looks for the stop every 0.1 s, then gives open
    connections 0.1 s more: a fifth of a second at the end of every test that serves something.
    Stopped with force_exit, nothing is owed to open connections, which the loop's end cancels."""

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):
            ticks += 1
            await asyncio.sleep(0.01)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if not self.force_exit:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()


@contextmanager
def serve_on_loopback(
    app: Any, *, lifespan: str = "off", sock: socket.socket | None = None, **options: Any
) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 at a free port (or on `sock`, bound already), in a thread;
    yields http://127.0.0.1:PORT. `options` go to uvicorn.Config (the HTTP server's limits, say)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, **options)
    server = _PromptServer(config)
    sockets = {"sockets": [sock]} if sock else {}
    thread = threading.Thread(target=server.run, kwargs=sockets, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Do not wait for requests a test left hanging on purpose (an app with a lifespan
        # is let shut down in order).
        server.force_exit = lifespan == "off"
        server.should_exit = True
        thread.join(timeout=10)


API_VERSIONS = ("v1", "v2")


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    """Every test that talks to Census runs once per API version."""
    version: str = request.param
    return version


@dataclass
class Sandbox:
    root: str
    api_version: str
    token: str
    workspace: Workspace

    @property
    def prefix(self) -> str:
        """The API's path, as the sandbox's request log records it: /api/v1 or /api/v2."""
        return f"/api/{self.api_version}"

    @property
    def base_url(self) -> str:
        return self.root + self.prefix

    @property
    def group_id(self) -> str | None:
        """The group creates go to, as a v2 user sets CENSUS_GROUP_ID; v1 has none."""
        return GROUPS[0] if self.api_version == "v2" else None

    def census(self, token: str | None = None, **options: Any) -> CensusClient:
        """A Census client for this sandbox's API version, with its token or `token`."""
        api = API_VERSION_MAPPINGS[self.api_version]
        return CensusClient(self.base_url, token or self.token, api=api, **options)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "token": SecretStr(self.token),
            "base_url": self.base_url,
            "api_version": self.api_version,
            "group_id": self.group_id,
        }
        return Settings(**(values | overrides))


@contextmanager
def running_sandbox(
    api_version: str = "v1",
    *,
    tokens: tuple[str, ...] | None = None,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    **config: Any,
) -> Iterator[Sandbox]:
    """A sandbox on loopback, spoken to in `api_version`; `tokens` are the ones that version accepts,
    and `wrap` puts a test's own middleware in front of it."""
    accepted = tokens or (SANDBOX_TOKENS[api_version],)
    app = create_sandbox_app(
        SandboxConfig(**config, **{"tokens" if api_version == "v1" else "pats": accepted})
    )
    with serve_on_loopback(wrap(app) if wrap else app) as root:
        yield Sandbox(root=root, api_version=api_version, token=accepted[0], workspace=app.state.workspace)


@pytest.fixture
def sandbox(api_version: str) -> Iterator[Sandbox]:
    """A fresh 60-source sandbox on loopback, in each API version; writes in one test never reach another."""
    with running_sandbox(api_version, refresh_seconds=0.2) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[Client]:
    """The real MCP server, in-process, talking HTTP to the loopback sandbox."""
    async with Client(build_server(sandbox.settings())) as connected:
        yield connected


@dataclass
class Scripted:
    """A fake Census that answers every request with one scripted response."""

    status: int = 200
    body: str = "{}"
    content_type: str = "application/json"
    delay_seconds: float = 0.0
    requests: int = 0

    async def respond(self, request: Request) -> Response:
        self.requests += 1
        if self.delay_seconds:
            await anyio.sleep(self.delay_seconds)
        return Response(self.body, status_code=self.status, media_type=self.content_type)


@pytest.fixture
def scripted(api_version: str) -> Iterator[tuple[Scripted, str]]:
    """A scripted fake Census on loopback and its base URL, in each API version."""
    fake = Scripted()
    methods = ["GET", "POST", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", fake.respond, methods=methods)])
    with serve_on_loopback(app) as root:
        yield fake, f"{root}/api/{api_version}"


def settings_for(base_url: str, **changes: Any) -> Settings:
    """Settings that call a fake Census at `base_url`, in the API version its path names.

    On v2 a default group stands in for CENSUS_GROUP_ID, as a v2 user would set one.
    """
    if base_url.endswith("/api/v2"):
        return Settings(base_url=base_url, api_version="v2", **{"group_id": "grp_default", **changes})
    return Settings(base_url=base_url, api_version="v1", **changes)
