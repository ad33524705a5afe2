"""The shared cache, against a real redis-server started here: workers share one read of each list
per window, a write through any of them clears it for all, whether Redis was paused, killed or
restarted across it, and Redis going away fails no call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from pydantic import SecretStr
from redis import ConnectionError as RedisConnectionError
from redis import Redis

from census_mcp.census.cache import Fetched, ListCache, codec_for
from census_mcp.census.models import Listing, Source
from census_mcp.census.shared_cache import ANNOUNCE_RETRY_SECONDS, SharedListCache, _data_key, _generation_key
from census_mcp.sandbox.faults import NO_FAULTS, FaultConfig
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok, said_by
from tests.test_hostile_http import _result, _tool_call
from tests.test_http import PASSTHROUGH_TOKENS, connected, serving
from tests.test_real_clients import _free_port
from tests.test_stdio import _environment

pytestmark = pytest.mark.anyio
REDIS_AWAY = "The shared cache (Redis) cannot be reached"
REDIS_BACK = "The shared cache (Redis) answers again."
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
        restarted = _start_redis(self.port, self.keeping)
        if restarted is None:
            pytest.fail(f"another process took port {self.port} while redis-server restarted")
        self.process = restarted


def _start_redis(port: int, keeping: Path | None = None) -> subprocess.Popen[bytes] | None:
    """redis-server on a loopback port, once it answers there (None when the port was taken); keeping
    its data in an append-only file in `keeping`, written before each answer, or else nothing on disk."""
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
    if _serves_on(process, port):
        return process
    process.kill()
    process.wait(timeout=10)
    return None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of its own, on a free loopback port, keeping nothing on disk."""
    with _redis_server() as server:
        yield server


@contextmanager
def _redis_server(keeping: Path | None = None) -> Iterator[RedisServer]:
    # redis-server cannot bind a free port itself and say which (--port 0 turns TCP off): it gets
    # one probed free, and is asked for its pid, in case another test's server took the port first.
    for _ in range(5):
        port = _free_port()
        if (process := _start_redis(port, keeping)) is not None:
            break
    else:
        pytest.fail("redis-server found no free port in five tries")
    server = RedisServer(port, process, keeping)
    try:
        yield server
    finally:
        server.resume()
        if server.process.poll() is None:
            server.stop()


def _serves_on(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether this redis-server process answers on the port: False once it has exited (the port
    was taken) or when another one answers there."""
    deadline = time.monotonic() + 10
    with Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
        while process.poll() is None:
            try:
                return bool(client.info("server")["process_id"] == process.pid)
            except RedisConnectionError:
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


def _label(listed: Fetched[Listing[Any]], source_id: int) -> str | None:
    return next(source.label for source in listed.value.items if source.id == source_id)


async def test_workers_share_one_read_per_window_and_a_write_clears_it_for_all(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """Two clients with caches of their own over one Redis, as two workers have."""
    first, second = _worker(redis_server), _worker(redis_server)
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
    cache = _worker(redis_server)
    async with sandbox.census(cache=cache) as census:
        await census.list_sources()
        redis_server.stop()
        with caplog.at_level(logging.WARNING):
            for _ in range(5):
                asked = datetime.now(UTC)
                listed = await census.list_sources()
                assert listed.value.total == len(sandbox.workspace.sources)
                assert not listed.from_cache  # read from Census, and said so
                assert listed.fetched_at >= asked
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
            assert kept.keys("census-mcp:lists:*:*:*:*")  # a list: workspace, generation, token, what
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
        # The window ends: Redis lets the list go (as its own expiry would at this moment), and
        # keeps the workspace's generation, so that only the list's age sends the worker to Redis.
        kept = Redis.from_url(redis_server.url)
        kept.delete(*kept.keys("census-mcp:lists:*:*:*:*"))
        kept.close()
        wall[0] = read_at + 31
        after = await census.list_sources()
        assert not after.from_cache
        assert _list_reads(sandbox) == 2
        assert next(source for source in after.value.items if source.id == 2).name == "Renamed after the read"
        # Redis restarted empty: a new generation, under which nothing kept before is found.
        kept = Redis.from_url(redis_server.url)
        kept.flushdb()
        kept.close()
        wall[0] = after.fetched_at.timestamp() + 31
        assert not (await census.list_sources()).from_cache
        assert _list_reads(sandbox) == 3
    await cache.aclose()


async def test_a_write_while_redis_is_paused_is_seen_by_the_other_worker_once_it_resumes(
    sandbox: Sandbox, redis_server: RedisServer
) -> None:
    """A worker reads, then writes, while Redis is stopped: its read finds Redis away, and its write
    is announced all the same, and taken when Redis resumes, so that the other worker's very next
    list, and a newly started worker's, show the write."""
    writer, other = _worker(redis_server), _worker(redis_server)
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
        newcomer = _worker(redis_server)
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
    caches = [_worker(redis_server) for _ in range(3)]
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
        caches.append(_worker(redis_server))
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
        writer, other = _worker(redis_server), _worker(redis_server)
        async with sandbox.census(cache=writer) as one, sandbox.census(cache=other) as two:
            await one.list_sources()
            assert (await two.list_sources()).from_cache
            # Twice: every write Redis could not take is tried again, not only the first.
            for written in ("Written while Redis was down", "Written while Redis was down again"):
                redis_server.stop()
                await one.update_source(2, {"label": written})
                redis_server.restart()
                back = time.monotonic()
                while _label(await two.list_sources(), 2) != written:
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
    cut_off = _worker(f"redis://127.0.0.1:{_free_port()}/0", window)
    other = _worker(redis_server, window)
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
        log = (tmp_path / "workers.log").open("w")
        env = _environment(
            CENSUS_API_TOKEN=sandbox.token,
            CENSUS_API_BASE_URL=sandbox.base_url,
            CENSUS_MCP_AUTH_TOKEN="workers-token-3e8c1f5a9b27d4e60c",
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
    succeeded = 0

    async def one() -> None:
        nonlocal succeeded
        headers = {
            "Authorization": "Bearer workers-token-3e8c1f5a9b27d4e60c",
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


# ------------------------------------------------------------------ the shared cache's own rules
# SharedListCache on its own, over a real redis-server, with a stand-in for Census that counts its
# reads: what each of its rules is for, one by one.

WORKSPACE = "http://census.test/api/v1"
KEY = (WORKSPACE, "token-digest", "/sources?[]")
CODEC = codec_for(Source)
AWAY_LINE = (
    "The shared cache (Redis) cannot be reached (ConnectionError): lists are read from Census on every "
    "call, and Redis is tried again every 5 s."
)


class Census:
    """Census's list of sources, as a fetch that counts its reads; `during` runs inside each read."""

    def __init__(self, label: str = "first", seconds: float = 0.0) -> None:
        self.label = label
        self.seconds = seconds
        self.reads = 0
        self.failing = 0
        """How many of the next reads fail."""
        self.during: Callable[[], Awaitable[None]] | None = None

    async def fetch(self) -> Listing[Source]:
        self.reads += 1
        failing, self.failing = self.failing > 0, max(0, self.failing - 1)
        if self.during is not None:
            await self.during()
        await anyio.sleep(self.seconds)
        if failing:
            raise RuntimeError("Census failed this read")
        rows = [Source(id=n, name=f"source {n}", type="snowflake", label=self.label) for n in (1, 2)]
        return Listing(rows, total=2, json_bytes=200)


def _worker(redis: RedisServer | str, ttl: float = 30, **clocks: Callable[[], float]) -> SharedListCache:
    """One worker's cache: its own ListCache (on the monotonic clock it is given) over the shared Redis
    (or over a URL where none answers)."""
    local = ListCache(ttl_seconds=ttl, clock=clocks.pop("local_clock", time.monotonic))
    return SharedListCache(redis if isinstance(redis, str) else redis.url, ttl, local=local, **clocks)


def _redis(redis: RedisServer) -> Redis:
    return Redis.from_url(redis.url)


def _gets(redis: RedisServer) -> int:
    """GET commands Redis has answered so far."""
    with _redis(redis) as kept:
        stats = kept.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _current_data_key(redis: RedisServer) -> str:
    """Where KEY's list is kept in Redis now, under its workspace's current generation."""
    with _redis(redis) as kept:
        generation = kept.get(_generation_key(KEY[0]))
    assert isinstance(generation, bytes)
    return _data_key(KEY, generation)


def _first_label(fetched: Fetched[Listing[Source]]) -> str | None:
    return fetched.value.items[0].label


async def test_no_window_or_no_codec_keeps_lists_out_of_redis(redis_server: RedisServer) -> None:
    """A window of 0 caches nothing; a list with no codec to store it by stays in the worker's own
    cache (refreshed when asked, and cleared by a write). Either way Redis holds no list. A window of
    1 s is still shared."""
    census = Census()
    uncached = _worker(redis_server, ttl=0)
    await uncached.get(KEY, census.fetch, refresh=False, codec=CODEC)
    await uncached.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert census.reads == 2
    own = _worker(redis_server)
    await own.get(KEY, census.fetch, refresh=False, codec=None)
    assert (await own.get(KEY, census.fetch, refresh=False, codec=None)).from_cache
    assert census.reads == 3
    assert not (await own.get(KEY, census.fetch, refresh=True, codec=None)).from_cache
    assert census.reads == 4
    with _redis(redis_server) as kept:
        assert kept.dbsize() == 0
    await own.clear(WORKSPACE)  # a write: the worker's own copy goes too
    assert not (await own.get(KEY, census.fetch, refresh=False, codec=None)).from_cache
    assert census.reads == 5
    short = [_worker(redis_server, ttl=1), _worker(redis_server, ttl=1)]
    await short[0].get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert (await short[1].get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    assert census.reads == 6
    for cache in (uncached, own, *short):
        await cache.aclose()


async def test_a_worker_new_to_a_list_gets_it_from_redis_as_read_then(redis_server: RedisServer) -> None:
    census = Census()
    first, second = _worker(redis_server), _worker(redis_server)
    read = await first.get(KEY, census.fetch, refresh=False, codec=CODEC)
    shared = await second.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert census.reads == 1
    assert (read.from_cache, shared.from_cache) == (False, True)
    assert shared.fetched_at == read.fetched_at
    assert read.fetched_at.tzinfo is UTC
    assert shared.value.items == read.value.items
    with _redis(redis_server) as kept:
        # Each worker's two connections (its lists', and its announcements'), and this look.
        assert kept.info("clients")["connected_clients"] == 5
        await first.aclose()
        await second.aclose()
        for _ in range(100):  # Redis notices a closed connection on its next turn
            if kept.info("clients")["connected_clients"] == 1:
                break
            await anyio.sleep(0.02)
        assert kept.info("clients")["connected_clients"] == 1


async def test_a_hit_in_a_workers_own_copy_costs_one_small_read_of_redis(redis_server: RedisServer) -> None:
    """A hit reads the workspace's generation from Redis, not the list again; refresh reads Census."""
    census = Census()
    worker = _worker(redis_server)
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    before = _gets(redis_server)
    for _ in range(5):
        assert (await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    assert _gets(redis_server) - before == 5
    forced = await worker.get(KEY, census.fetch, refresh=True, codec=CODEC)
    assert not forced.from_cache
    assert census.reads == 2
    await worker.aclose()


async def test_a_refreshed_copy_replaces_the_old_one(redis_server: RedisServer) -> None:
    """Past the window the worker asks Redis again (here Redis has let the list go, so Census is read
    again): the list it gets then is the one it keeps, not the copy it had."""
    census = Census(label="old")
    offset = [0.0]
    worker = _worker(redis_server, now=lambda: time.time() + offset[0])
    assert _first_label(await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)) == "old"
    census.label = "new"
    with _redis(redis_server) as kept:
        kept.flushdb()
    offset[0] = 31
    assert _first_label(await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)) == "new"
    offset[0] = 0
    assert _first_label(await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)) == "new"
    assert census.reads == 2
    await worker.aclose()


async def test_after_a_write_the_next_read_is_shared_again(redis_server: RedisServer) -> None:
    census = Census()
    first, second = _worker(redis_server), _worker(redis_server)
    await first.get(KEY, census.fetch, refresh=False, codec=CODEC)
    await first.clear(WORKSPACE)
    census.label = "written"
    assert not (await first.get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    after = await second.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert after.from_cache
    assert _first_label(after) == "written"
    assert census.reads == 2
    await first.aclose()
    await second.aclose()


async def test_one_worker_reads_while_the_others_wait_for_it_gently(redis_server: RedisServer) -> None:
    """The reader holds a lock that expires on its own within the window (should it die), and what it
    stores expires with the window; a worker waiting for it asks Redis every 50 ms, no faster."""
    census = Census(seconds=0.5)
    held_for: list[int] = []

    async def look_at_the_lock() -> None:
        await anyio.sleep(0.01)  # a moment into the read
        with _redis(redis_server) as kept:
            held_for.append(kept.pttl(f"{_current_data_key(redis_server)}:lock"))

    census.during = look_at_the_lock
    reader, waiter = _worker(redis_server), _worker(redis_server)
    results: list[Fetched[Listing[Source]]] = []
    done: list[float] = []

    async def read(cache: SharedListCache) -> None:
        results.append(await cache.get(KEY, census.fetch, refresh=False, codec=CODEC))
        done.append(time.monotonic())

    before = _gets(redis_server)
    async with anyio.create_task_group() as both:
        both.start_soon(read, reader)
        await anyio.sleep(0.1)
        both.start_soon(read, waiter)
    assert census.reads == 1
    assert [result.from_cache for result in results] == [False, True]
    assert 0 < held_for[0] <= 30_000
    # The waiter has the list within a few polls of its being stored, without asking Redis
    # hundreds of times meanwhile.
    assert done[1] - done[0] < 0.5
    assert _gets(redis_server) - before <= 40
    with _redis(redis_server) as kept:
        assert 0 < kept.pttl(_current_data_key(redis_server)) <= 30_000
        assert kept.exists(f"{_current_data_key(redis_server)}:lock") == 0
    await reader.aclose()
    await waiter.aclose()


async def test_when_the_reader_fails_the_others_read_for_themselves_at_once(
    redis_server: RedisServer,
) -> None:
    """After a write (the workspace's generation moved on), the reader's Census read fails: the worker
    waiting on it reads for itself as soon as the lock is gone, and stores what it read for a third."""
    census = Census(seconds=0.3)
    reader, waiter, third = _worker(redis_server), _worker(redis_server), _worker(redis_server)
    await reader.clear(WORKSPACE)
    census.failing = 1
    outcomes: list[object] = []

    async def read(cache: SharedListCache) -> None:
        try:
            outcomes.append(await cache.get(KEY, census.fetch, refresh=False, codec=CODEC))
        except RuntimeError as failed:
            outcomes.append(failed)

    async def waiting() -> None:
        await anyio.sleep(0.1)
        await read(waiter)

    started = time.monotonic()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as both:
            both.start_soon(read, reader)
            both.start_soon(waiting)
    assert time.monotonic() - started < 3
    assert isinstance(outcomes[0], RuntimeError)
    assert isinstance(outcomes[1], Fetched)
    assert not outcomes[1].from_cache
    assert (await third.get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    assert census.reads == 2
    for cache in (reader, waiter, third):
        await cache.aclose()


async def test_a_reader_whose_lock_was_taken_over_leaves_it_alone(redis_server: RedisServer) -> None:
    """A read that outlived its lock (it expired, and another worker took it) frees no one's lock."""
    census = Census()
    lock: list[str] = []

    async def taken_over() -> None:
        lock.append(f"{_current_data_key(redis_server)}:lock")
        with _redis(redis_server) as kept:
            kept.set(lock[0], "another-worker", px=30_000)

    census.during = taken_over
    worker = _worker(redis_server)
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    with _redis(redis_server) as kept:
        assert kept.get(lock[0]) == b"another-worker"
    await worker.aclose()


async def test_redis_going_away_is_said_once_by_whichever_call_meets_it_first(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A write may be the first to meet it, or a read, or a read during which Redis died; either way
    one warning, and the worker's own lists still follow its writes."""
    census = Census()
    clock = [0.0]
    writer, dying = _worker(redis_server), _worker(redis_server)
    reader = _worker(redis_server, clock=lambda: clock[0])
    await writer.get(KEY, census.fetch, refresh=False, codec=CODEC)

    async def die() -> None:
        redis_server.stop()

    census.during = die
    with caplog.at_level(logging.WARNING, logger="census_mcp.census.shared_cache"):
        await dying.get(KEY, census.fetch, refresh=True, codec=CODEC)
        census.during = None
        said_dying = said_by(caplog, "census_mcp.census.shared_cache")
        caplog.clear()
        await writer.clear(WORKSPACE)
        said_writing = said_by(caplog, "census_mcp.census.shared_cache")
        caplog.clear()
        await reader.get(KEY, census.fetch, refresh=False, codec=CODEC)
        said_reading = said_by(caplog, "census_mcp.census.shared_cache")
    assert said_dying == said_writing == said_reading == [AWAY_LINE]
    reads = census.reads
    await reader.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert census.reads == reads + 1  # while Redis is away, Census: none can know what another wrote
    await reader.clear(WORKSPACE)
    census.label = "written"
    assert _first_label(await reader.get(KEY, census.fetch, refresh=False, codec=CODEC)) == "written"
    # 5 s later Redis is asked again, and is still away: a refresh still reads Census.
    clock[0] += 5
    census.label = "refreshed"
    assert _first_label(await reader.get(KEY, census.fetch, refresh=True, codec=CODEC)) == "refreshed"
    for cache in (writer, reader, dying):
        await cache.aclose()


async def test_a_redis_that_stops_answering_costs_a_call_one_second_then_none_for_5(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Paused (SIGSTOP), Redis keeps its connections but answers nothing: the call waits 1 s for it,
    once, and reads Census; a write waits at most 1 s for Redis to take its announcement; Redis is
    asked again 5 s later (by the worker's clock). Each going away and coming back is said once."""
    caplog.set_level(logging.WARNING)
    census = Census()
    clock = [0.0]
    worker = _worker(redis_server, clock=lambda: clock[0])
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with anyio.fail_after(5):
            await worker.get(KEY, census.fetch, refresh=True, codec=CODEC)
        assert time.monotonic() - started < 1.8
        started = time.monotonic()
        await worker.clear(WORKSPACE)
        assert time.monotonic() - started < 1.5
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    for _ in range(250):  # Redis, resumed, takes the write's announcement first
        if not worker._unannounced:
            break
        await anyio.sleep(0.02)
    assert not worker._unannounced
    assert _warnings(caplog) == [REDIS_AWAY, REDIS_BACK]  # the announcement taken says so
    before = _gets(redis_server)
    clock[0] = 4.9
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert _gets(redis_server) == before
    clock[0] = 5.0
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert _gets(redis_server) > before
    # Away again, with no write to announce: the first call Redis answers says it is back.
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        await worker.get(KEY, census.fetch, refresh=True, codec=CODEC)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    clock[0] = 10.0
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert _warnings(caplog) == [REDIS_AWAY, REDIS_BACK, REDIS_AWAY, REDIS_BACK]
    await worker.aclose()


async def test_a_generation_that_is_not_text_still_names_where_lists_are_kept(
    redis_server: RedisServer,
) -> None:
    """Redis is shared: whatever another program put under a workspace's generation, lists are still
    kept and shared under it, and no call fails for it."""
    with _redis(redis_server) as kept:
        kept.set(_generation_key(WORKSPACE), b"\xff\xfe")
    census = Census()
    first, second = _worker(redis_server), _worker(redis_server)
    await first.get(KEY, census.fetch, refresh=False, codec=CODEC)
    assert (await second.get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    assert census.reads == 1
    for cache in (first, second):
        await cache.aclose()


async def test_writes_at_once_are_each_announced_and_none_fails(redis_server: RedisServer) -> None:
    """Three writes through one worker at once: each waits on the others' announcements, none fails,
    and another worker's next list is read afresh."""
    census = Census()
    writer, reader = _worker(redis_server), _worker(redis_server)
    await reader.get(KEY, census.fetch, refresh=False, codec=CODEC)
    async with anyio.create_task_group() as writes:
        for _ in range(3):
            writes.start_soon(writer.clear, WORKSPACE)
    assert not writer._unannounced
    assert not (await reader.get(KEY, census.fetch, refresh=False, codec=CODEC)).from_cache
    with _redis(redis_server) as kept:
        # The reader's two connections, this look, and the writer's one for its announcements,
        # which they took turns on.
        assert kept.info("clients")["connected_clients"] == 4
    for cache in (writer, reader):
        await cache.aclose()


async def test_a_write_not_yet_announced_keeps_its_worker_from_redis_lists(redis_server: RedisServer) -> None:
    """Redis holding back writes (CLIENT PAUSE WRITE) yet answering reads: the announcement waits,
    and meanwhile the worker that wrote reads Census, not the list Redis still holds."""
    census = Census(label="before")
    worker = _worker(redis_server)
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    census.label = "after"
    with _redis(redis_server) as admin:
        admin.client_pause(3000, all=False)
        try:
            await worker.clear(WORKSPACE)
            assert worker._unannounced
            mine = await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
        finally:
            admin.client_unpause()
    assert (_first_label(mine), mine.from_cache) == ("after", False)
    await worker.aclose()


async def test_a_workers_background_work_is_let_go_once_done_and_stopped_on_closing(
    redis_server: RedisServer,
) -> None:
    """Each write's announcement runs in the background: held until done (asyncio keeps only a weak
    reference to a task), then let go; one Redis has not taken is stopped when the worker closes."""
    census = Census()
    worker = _worker(redis_server)
    await worker.get(KEY, census.fetch, refresh=False, codec=CODEC)
    for _ in range(3):
        await worker.clear(WORKSPACE)
    for _ in range(250):
        if not worker._background:
            break
        await anyio.sleep(0.02)
    assert not worker._background
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        await worker.clear(WORKSPACE)  # not taken within its second: waiting, and tried again later
        assert _announcing()
        await worker.aclose()
        await anyio.sleep(0.1)
        assert _announcing() == []
    finally:
        redis_server.process.send_signal(signal.SIGCONT)


def _announcing() -> list[str]:
    """The shared cache's background work still running."""
    return [
        name
        for task in asyncio.all_tasks()
        if not task.done() and (name := task.get_coro().__qualname__).startswith("SharedListCache.")
    ]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The shared cache's warnings so far; that it went away cut to the words that say so."""
    return [
        REDIS_AWAY if record.message.startswith(REDIS_AWAY) else record.message
        for record in caplog.records
        if record.name == "census_mcp.census.shared_cache"
    ]


async def test_a_redis_host_that_never_answers_a_connection_costs_a_call_one_second() -> None:
    """A host that drops connection attempts (here a listener whose queue is full) is given up on
    after 1 s, not after the system's minutes of retries."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = []
        for _ in range(4):  # fill the accept queue; later attempts go unanswered
            waiting = socket.socket()
            waiting.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                waiting.connect(("127.0.0.1", port))
            queued.append(waiting)
        census = Census()
        cache = SharedListCache(f"redis://127.0.0.1:{port}/0", 30, local=ListCache(ttl_seconds=30))
        started = time.monotonic()
        try:
            with anyio.fail_after(10):
                await cache.get(KEY, census.fetch, refresh=False, codec=CODEC)
            assert time.monotonic() - started < 2.5
            assert census.reads == 1
        finally:
            for waiting in queued:
                waiting.close()
