"""Shared fixtures: the sandbox (and scripted fakes) served on a real loopback socket."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
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

from census_mcp.sandbox import SANDBOX_TOKEN, SandboxConfig, Workspace, create_sandbox_app
from census_mcp.server import build_server
from census_mcp.settings import Settings

# CI explores the same examples every run, so a landing never hangs on chance; local runs
# explore new ones each time.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextmanager
def serve_on_loopback(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 at a free port, in a thread; yields http://127.0.0.1:PORT."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
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
        server.should_exit = True
        server.force_exit = lifespan == "off"
        thread.join(timeout=10)


@dataclass
class Sandbox:
    base_url: str
    workspace: Workspace

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"token": SecretStr(SANDBOX_TOKEN), "base_url": self.base_url}
        return Settings(**(values | overrides))


@contextmanager
def running_sandbox(**config: Any) -> Iterator[Sandbox]:
    app = create_sandbox_app(SandboxConfig(**config))
    with serve_on_loopback(app) as root:
        yield Sandbox(base_url=f"{root}/api/v1", workspace=app.state.workspace)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh 60-source sandbox on loopback; writes in one test never reach another."""
    with running_sandbox(refresh_seconds=0.2) as running:
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
def scripted() -> Iterator[tuple[Scripted, str]]:
    """A scripted fake Census on loopback and its base URL."""
    fake = Scripted()
    methods = ["GET", "POST", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", fake.respond, methods=methods)])
    with serve_on_loopback(app) as root:
        yield fake, f"{root}/api/v1"
