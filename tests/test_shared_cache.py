"""The shared cache, against a real redis-server started here: workers share one read of each list
per window, a write through any of them clears it for all, and Redis going away fails no call."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
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
import redis

from census_mcp.census.cache import ListCache
from census_mcp.census.shared_cache import SharedListCache
from census_mcp.sandbox.faults import NO_FAULTS, FaultConfig
from tests.conftest import Sandbox, running_sandbox
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
    # redis-server cannot bind a free port itself and say which (--port 0 turns TCP off): it gets
    # one probed free, and is asked for its pid, in case another test's server took the port first.
    for _ in range(5):
        port = _free_port()
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if _serves_on(process, port):
            break
        process.kill()
        process.wait(timeout=10)
    else:
        pytest.fail("redis-server found no free port in five tries")
    server = RedisServer(f"redis://127.0.0.1:{port}/0", process)
    try:
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def _serves_on(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether this redis-server process answers on the port: False once it has exited (the port
    was taken) or when another one answers there."""
    deadline = time.monotonic() + 10
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
        while process.poll() is None:
            try:
                return bool(client.info("server")["process_id"] == process.pid)
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    return False


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


def test_two_uvicorn_workers_share_the_cache_across_processes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Many clients over HTTP, on two worker processes: each list is read from Census once per
    window; with Redis killed while calls are in flight, every call still answers, and both workers
    go on answering without it."""
    with running_sandbox("v1", size=300) as sandbox:
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
        # Port 0: uvicorn binds a free port itself, before it starts the workers, and says which.
        workers = subprocess.Popen(
            [*uvicorn, "--host", "127.0.0.1", "--port", "0"], env=env, stdout=log, stderr=log
        )
        try:
            root = _serving_root(tmp_path / "workers.log", workers)
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


def _serving_root(log: Path, server: subprocess.Popen[bytes]) -> str:
    """http://127.0.0.1:PORT, once uvicorn says it is running there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        said = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if said:
            return said.group(1)
        time.sleep(0.05)
    pytest.fail(f"the workers did not say where they serve (exit {server.poll()}): {log.read_text()}")


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
