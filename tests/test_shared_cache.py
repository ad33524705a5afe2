"""The shared cache, against a real redis-server started here: workers share one read of each list
per window, a write through any of them clears it for all, whether Redis was paused, killed or
restarted across it, and Redis going away fails no call."""

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from census_mcp.census.cache import Fetched, ListCache
from census_mcp.census.models import Listing
from census_mcp.census.shared_cache import ANNOUNCE_RETRY_SECONDS, SharedListCache
from census_mcp.sandbox.faults import NO_FAULTS, FaultConfig
from tests.conftest import Sandbox, running_sandbox
from tests.test_real_clients import _free_port
from tests.test_stdio import _environment

pytestmark = pytest.mark.anyio
REDIS_AWAY = "The shared cache (Redis) cannot be reached"
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "census", "password": "pw", "database": "dw"}


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    keeping: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """Stopped, not gone: connections still open, and what is sent waits for it to resume."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Killed and started again on its port, with what it kept on disk (nothing, by default)."""
        self.stop()
        self.process = _start_redis(self.port, self.keeping)


def _start_redis(port: int, keeping: Path | None = None) -> subprocess.Popen[bytes]:
    """redis-server on a loopback port, once it answers PING; keeping its data in an append-only
    file in `keeping`, written before each answer, or else nothing on disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed: apt-get install -y redis-server (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if keeping is not None:
        options += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(keeping)]
    process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of its own, on a free loopback port, keeping nothing on disk."""
    with _redis_server() as server:
        yield server


@contextmanager
def _redis_server(keeping: Path | None = None) -> Iterator[RedisServer]:
    port = _free_port()
    server = RedisServer(port, _start_redis(port, keeping), keeping)
    try:
        yield server
    finally:
        server.resume()
        if server.process.poll() is None:
            server.stop()


def _list_reads(sandbox: Sandbox) -> int:
    """How many times the workspace's sources were read from Census: each read asks for page 1 once."""
    return sum(
        1
        for request in sandbox.workspace.requests
        if request.path == f"{sandbox.prefix}/sources" and "page=1&" in f"{request.query}&"
    )


def _shared(redis: RedisServer | str, seconds: float = 30) -> SharedListCache:
    url = redis if isinstance(redis, str) else redis.url
    return SharedListCache(url, seconds, local=ListCache(ttl_seconds=seconds))


def _label(listed: Fetched[Listing[Any]], source_id: int) -> str | None:
    return next(source.label for source in listed.value.items if source.id == source_id)


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


async def test_a_write_while_redis_is_paused_is_seen_by_the_other_worker_once_it_resumes(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """A worker reads, then writes, while Redis is stopped: its read finds Redis away, and its write
    is announced all the same, and taken when Redis resumes, so that the other worker's very next
    list, and a newly started worker's, show the write."""
    writer, other = _shared(redis_server), _shared(redis_server)
    async with sandbox.census(cache=writer) as one, sandbox.census(cache=other) as two:
        await one.list_sources()
        assert (await two.list_sources()).from_cache
        redis_server.pause()
        try:
            assert not (await one.list_sources()).from_cache
            await one.update_source(2, {"label": "Written while Redis was paused"})
        finally:
            redis_server.resume()
        seen = await two.list_sources()
        assert _label(seen, 2) == "Written while Redis was paused"
        assert not seen.from_cache
        newcomer = _shared(redis_server)
        async with sandbox.census(cache=newcomer) as three:
            assert _label(await three.list_sources(), 2) == "Written while Redis was paused"
        # Redis answers again: lists are shared again.
        reads = _list_reads(sandbox)
        assert (await two.list_sources()).from_cache
        assert _list_reads(sandbox) == reads
    for cache in (writer, other, newcomer):
        await cache.aclose()


async def test_while_redis_is_down_and_once_it_restarts_empty_no_worker_serves_a_list_from_before_a_write(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """Killed: every worker reads Census, as none can know what another wrote. Restarted empty: a
    worker that kept the list it shared before does not serve it again, nor does a new worker."""
    caches = [_shared(redis_server) for _ in range(3)]
    async with (
        sandbox.census(cache=caches[0]) as one,
        sandbox.census(cache=caches[1]) as two,
        sandbox.census(cache=caches[2]) as idle,
    ):
        await one.list_sources()
        assert (await two.list_sources()).from_cache
        assert (await idle.list_sources()).from_cache
        redis_server.stop()
        await two.list_sources()
        await one.update_source(2, {"label": "Written while Redis was down"})
        assert _label(await two.list_sources(), 2) == "Written while Redis was down"
        redis_server.restart()
        assert _label(await idle.list_sources(), 2) == "Written while Redis was down"
        caches.append(_shared(redis_server))
        async with sandbox.census(cache=caches[-1]) as newcomer:
            assert _label(await newcomer.list_sources(), 2) == "Written while Redis was down"
    for cache in caches:
        await cache.aclose()


async def test_a_redis_that_comes_back_with_its_lists_serves_them_until_the_write_is_announced(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """The window that remains when Redis keeps its data across a restart, and its bound: a write
    made while Redis was down is announced within ANNOUNCE_RETRY_SECONDS of its coming back, and
    until then a worker that never saw it go may serve the list it kept."""
    with _redis_server(keeping=tmp_path) as redis_server:
        writer, other = _shared(redis_server), _shared(redis_server)
        async with sandbox.census(cache=writer) as one, sandbox.census(cache=other) as two:
            await one.list_sources()
            assert (await two.list_sources()).from_cache
            redis_server.stop()
            await one.update_source(2, {"label": "Written while Redis was down"})
            redis_server.restart()
            back = time.monotonic()
            while _label(await two.list_sources(), 2) != "Written while Redis was down":
                assert time.monotonic() - back < ANNOUNCE_RETRY_SECONDS + 0.5
                await anyio.sleep(0.05)
        for cache in (writer, other):
            await cache.aclose()


async def test_a_worker_cut_off_from_redis_hides_its_write_from_the_others_for_one_window_at_most(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """The window that remains, and its bound: a worker that cannot reach Redis while the others
    can cannot tell them of its write, and they serve the list they share until it is as old as the
    cache window (here 2 s), never longer."""
    window = 2.0
    cut_off = _shared(f"redis://127.0.0.1:{_free_port()}/0", window)
    other = _shared(redis_server, window)
    async with sandbox.census(cache=cut_off) as one, sandbox.census(cache=other) as two:
        read = (await two.list_sources()).fetched_at.timestamp()
        await one.update_source(2, {"label": "Written by a worker Redis cannot hear"})
        while True:
            seen = await two.list_sources()
            if _label(seen, 2) == "Written by a worker Redis cannot hear":
                break
            assert seen.fetched_at.timestamp() == read
            assert time.time() - read < window
            await anyio.sleep(0.1)
        assert time.time() - read < window + 1
    for cache in (cut_off, other):
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
