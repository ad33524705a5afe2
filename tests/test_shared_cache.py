"""The shared cache, against a real redis-server started here: workers share one read of each list
per window, a write through any of them clears it for all, and Redis going away fails no call."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from pydantic import SecretStr
from redis import Redis

from census_mcp.census.cache import ListCache
from census_mcp.census.shared_cache import SharedListCache
from census_mcp.sandbox.faults import NO_FAULTS, FaultConfig
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok
from tests.test_http import PASSTHROUGH_TOKENS, connected, serving
from tests.test_real_clients import _free_port
from tests.test_stdio import _environment

pytestmark = pytest.mark.anyio
REDIS_AWAY = "The shared cache (Redis) cannot be reached"
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "census", "password": "pw", "database": "dw"}


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of its own, on a free loopback port, keeping nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed: apt-get install -y redis-server (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    server = RedisServer(f"redis://127.0.0.1:{port}/0", process)
    try:
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def _list_reads(sandbox: Sandbox) -> int:
    """How many times the workspace's sources were read from Census: each read asks for page 1 once."""
    return sum(
        1
        for request in sandbox.workspace.requests
        if request.path == f"{sandbox.prefix}/sources" and "page=1&" in f"{request.query}&"
    )


def _shared(redis: RedisServer) -> SharedListCache:
    return SharedListCache(redis.url, 30, local=ListCache(ttl_seconds=30))


async def test_workers_share_one_read_per_window_and_a_write_clears_it_for_all(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """Two clients with caches of their own over one Redis, as two workers have."""
    first, second = _shared(redis_server), _shared(redis_server)
    async with sandbox.census(cache=first) as one, sandbox.census(cache=second) as other:
        async with anyio.create_task_group() as many:
            for client in [one, other] * 10:
                many.start_soon(client.list_sources)
        assert _list_reads(sandbox) == 1  # one read for all twenty calls
        again = await other.list_sources()
        assert again.from_cache
        assert _list_reads(sandbox) == 1
        await one.update_source(2, {"label": "Written by one worker"})
        seen = await other.list_sources()
        assert not seen.from_cache
        assert _list_reads(sandbox) == 2
        assert next(s for s in seen.value.items if s.id == 2).label == "Written by one worker"
        forced = await one.list_sources(refresh=True)
        assert not forced.from_cache
        assert _list_reads(sandbox) == 3
    await first.aclose()
    await second.aclose()


async def test_redis_going_away_fails_no_call(
    sandbox: Sandbox, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _shared(redis_server)
    async with sandbox.census(cache=cache) as census:
        await census.list_sources()
        redis_server.stop()
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                listed = await census.list_sources()
                assert listed.value.total == len(sandbox.workspace.sources)
            await census.update_source(3, {"label": "Still writable"})
            assert (await census.list_sources()).value.items
    warnings = [record for record in caplog.records if REDIS_AWAY in record.message]
    assert len(warnings) == 1
    await cache.aclose()


async def test_a_second_passthrough_user_never_sees_the_first_users_list(
    api_version: str, redis_server: RedisServer
) -> None:
    """The shared cache is as safe as each worker's own: a list read with one caller's token is kept
    in Redis under that token's digest, and never served for another's, here one Census refuses."""
    alice, mallory = PASSTHROUGH_TOKENS[api_version]
    with running_sandbox(api_version, tokens=(alice,), forbidden_tokens=(mallory,)) as sandbox:
        cache_url = SecretStr(redis_server.url)
        settings = sandbox.settings(transport="http", auth="passthrough", token=None, cache_url=cache_url)
        with serving(settings) as url:
            async with connected(url, alice) as first:
                listed = await call_ok(first, "list_sources", {"limit": 100})
            assert listed.structured_content is not None
            assert listed.structured_content["total"] == len(sandbox.workspace.sources)
            kept = Redis.from_url(redis_server.url)
            assert [key for key in kept.keys("census-mcp:lists:*") if not key.endswith(b":generation")]
            kept.close()
            async with connected(url, mallory) as second:
                refused = await call_error(second, "list_sources", {"limit": 100})
    assert refused.startswith("The API token lacks access to this"), refused
    assert _list_reads(sandbox) == 2  # each token's own read; the second refused by Census


async def test_a_near_copy_lives_no_longer_than_the_window_since_census_was_read(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """A worker keeps what it got from Redis in its own cache, but only while the list is younger than
    the window, counted from when Census was read (the list may have waited in Redis most of it):
    past that, the worker asks Redis again, which has let it go, and Census is read afresh."""
    wall = [time.time()]
    local = ListCache(ttl_seconds=30, clock=lambda: 0.0)  # by its own clock, the near copy stays fresh
    cache = SharedListCache(redis_server.url, 30, local=local, now=lambda: wall[0])
    async with sandbox.census(cache=cache) as census:
        first = await census.list_sources()
        read_at = first.fetched_at.timestamp()
        sandbox.workspace.sources[2]["name"] = "Renamed after the read"
        wall[0] = read_at + 29
        within = await census.list_sources()
        assert within.from_cache
        assert _list_reads(sandbox) == 1
        # The window ends: Redis lets the list go (as its own expiry would at this moment).
        kept = Redis.from_url(redis_server.url)
        kept.flushdb()
        kept.close()
        wall[0] = read_at + 31
        after = await census.list_sources()
    assert not after.from_cache
    assert _list_reads(sandbox) == 2
    assert next(source for source in after.value.items if source.id == 2).name == "Renamed after the read"
    await cache.aclose()


def test_two_uvicorn_workers_share_the_cache_across_processes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Many clients over HTTP, on two worker processes: each list is read from Census once per
    window; with Redis killed while calls are in flight, every call still answers, and both workers
    go on answering without it."""
    with running_sandbox("v1", size=300) as sandbox:
        port = _free_port()
        log = (tmp_path / "workers.log").open("w")
        env = _environment(
            CENSUS_API_TOKEN=sandbox.token,
            CENSUS_API_BASE_URL=sandbox.base_url,
            CENSUS_MCP_AUTH_TOKEN="workers-token",
            CENSUS_MCP_CACHE_URL=redis_server.url,
            CENSUS_MCP_APP="0",
        )
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "census_mcp.asgi:create_app",
            "--factory",
            "--workers",
            "2",
        ]
        workers = subprocess.Popen(
            [*uvicorn, "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            root = f"http://127.0.0.1:{port}"
            _wait_for(root)
            served = anyio.run(_calls, f"{root}/mcp", 60)
            assert served == 60
            assert _list_reads(sandbox) == 1

            killed_mid_read = []

            async def kill_redis_once_census_is_being_read() -> None:
                for _ in range(500):
                    if _list_reads(sandbox) > 1:
                        break
                    await anyio.sleep(0.01)
                killed_mid_read.append(_list_reads(sandbox) > 1)
                redis_server.stop()

            # Census slowed and every call asking for a fresh read: the kill lands mid-call, with
            # one worker reading Census for all and the others waiting on Redis for its result.
            slow = FaultConfig(rate=1.0, kinds=("slow",), methods=("GET",), slow_seconds=0.5)
            sandbox.workspace.faults = slow
            in_flight = anyio.run(
                _calls, f"{root}/mcp", 30, {"refresh": True}, kill_redis_once_census_is_being_read
            )
            assert killed_mid_read == [True]
            assert in_flight == 30
            sandbox.workspace.faults = NO_FAULTS
            # Each worker says once that Redis is away, when a call of its own first meets it: two
            # such lines, with every call answered, mean both workers answer without Redis.
            noticed = 0
            for _ in range(10):
                assert anyio.run(_calls, f"{root}/mcp", 20) == 20
                noticed = (tmp_path / "workers.log").read_text().count(REDIS_AWAY)
                if noticed == 2:
                    break
            assert noticed == 2
        finally:
            workers.terminate()
            workers.wait(timeout=20)
            log.close()


def _wait_for(root: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{root}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.1)
    pytest.fail("the workers did not start")


async def _calls(
    url: str,
    count: int,
    arguments: dict[str, Any] | None = None,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """`count` list_sources calls at once, each on a connection of its own (so both workers get
    some), with `meanwhile` run alongside them; the number that succeeded."""
    from tests.test_hostile_http import _result, _tool_call

    succeeded = 0

    async def one() -> None:
        nonlocal succeeded
        headers = {
            "Authorization": "Bearer workers-token",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "list_sources",
        }
        async with httpx2.AsyncClient(timeout=30) as http:
            call = _tool_call("list_sources", arguments or {})
            answer = await http.post(url, content=call, headers=headers)
        if answer.status_code == 200 and _result(answer)["isError"] is False:
            succeeded += 1

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
        if meanwhile is not None:
            group.start_soon(meanwhile)
    return succeeded
