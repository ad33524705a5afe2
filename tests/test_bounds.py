"""What a server keeps per key, per user or per job is bounded by number and size, not only by time:
a team server meets thousands of tokens and ever-new searches over months without a restart."""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import pytest
from mcp import Client

from census_mcp.census.cache import CacheKey, ListCache
from census_mcp.census.models import PARSED_BYTES_PER_JSON_BYTE
from census_mcp.cli import build_parser
from census_mcp.server import build_server
from census_mcp.settings import SettingsError, from_arguments
from tests.conftest import running_sandbox
from tests.helpers import call_ok

pytestmark = pytest.mark.anyio

WORKSPACE = "https://census.test/api/v1"
DISTINCT_KEYS = 50_000


@dataclass(frozen=True)
class Value:
    """A cached value as the cache sees one: something with a size."""

    number: int
    size_bytes: int = 0


def key(search: object, workspace: str = WORKSPACE) -> CacheKey:
    return (workspace, "token-digest", f"sources/1/tables?search={search}")


def leftovers(cache: ListCache) -> int:
    """Per-key structures besides the entries: what made concurrent misses share a fetch."""
    return len(cache._flights)


async def feed(cache: ListCache, keys: range, size_bytes: int = 0) -> None:
    """One miss per key, as ever-new list_source_tables searches are."""
    for number in keys:

        async def fetch(number: int = number) -> Value:
            return Value(number, size_bytes)

        await cache.get(key(number), fetch)


async def test_fifty_thousand_keys_leave_the_configured_entries_and_nothing_else() -> None:
    cache = ListCache(ttl_seconds=30, max_entries=256)
    await feed(cache, range(DISTINCT_KEYS))
    assert len(cache._entries) == 256
    assert leftovers(cache) == 0
    # The most recent keys are the ones kept.
    assert set(cache._entries) == {key(number) for number in range(DISTINCT_KEYS - 256, DISTINCT_KEYS)}


async def traced_bytes_after(keys: int) -> int:
    """What a cache holds after `keys` distinct misses, traced by tracemalloc: the issue's measure,
    with entries that expire within a millisecond."""
    gc.collect()
    tracemalloc.start()
    try:
        cache = ListCache(ttl_seconds=0.001)
        await feed(cache, range(keys))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        assert len(cache._entries) <= cache.max_entries
        return held
    finally:
        tracemalloc.stop()


async def test_fifty_thousand_keys_cost_under_five_mb_more_than_a_hundred() -> None:
    few, many = await traced_bytes_after(100), await traced_bytes_after(DISTINCT_KEYS)
    assert many - few < 5 * 2**20, (few, many)


async def test_the_size_bound_evicts_a_large_listing_before_the_count_bound_is_reached() -> None:
    cache = ListCache(ttl_seconds=30, max_entries=256, max_bytes=1000)
    await feed(cache, range(1), size_bytes=900)
    await feed(cache, range(1, 3), size_bytes=50)
    assert key(0) in cache._entries
    await feed(cache, range(3, 4), size_bytes=50)
    assert key(0) not in cache._entries
    assert set(cache._entries) == {key(1), key(2), key(3)}
    # A list larger than the whole budget is not kept, and evicts nothing.
    await feed(cache, range(4, 5), size_bytes=1001)
    assert set(cache._entries) == {key(1), key(2), key(3)}


async def test_the_expired_go_first_then_the_least_recently_used() -> None:
    now = [0.0]
    cache = ListCache(ttl_seconds=30, max_entries=3, clock=lambda: now[0])
    await feed(cache, range(1))
    now[0] += 20
    await feed(cache, range(1, 3))
    now[0] += 15  # key 0 has expired; keys 1 and 2 have not
    await feed(cache, range(3, 4))
    assert set(cache._entries) == {key(1), key(2), key(3)}
    await feed(cache, range(1, 2))  # a hit: key 1 is now the most recently used
    await feed(cache, range(4, 5))
    assert set(cache._entries) == {key(1), key(3), key(4)}


async def test_an_expired_list_goes_before_a_fresher_one_used_less_recently() -> None:
    now = [0.0]
    cache = ListCache(ttl_seconds=30, max_entries=3, clock=lambda: now[0])
    await feed(cache, range(1))
    now[0] += 20
    await feed(cache, range(1, 3))
    now[0] += 5
    await feed(cache, range(1))  # a hit: key 0 is the most recently used, yet the oldest read
    now[0] += 6  # key 0 has expired; keys 1 and 2, used less recently, have not
    await feed(cache, range(3, 4))
    assert set(cache._entries) == {key(1), key(2), key(3)}


def held(cache: ListCache) -> int:
    """The bytes the cache counts as held, as its repr reports them."""
    return int(repr(cache).rsplit("size_bytes=", 1)[1].rstrip(")"))


async def test_the_bytes_held_are_those_of_the_lists_kept() -> None:
    now = [0.0]
    cache = ListCache(ttl_seconds=30, max_bytes=3000, clock=lambda: now[0])
    await feed(cache, range(3), size_bytes=1000)
    assert held(cache) == 3000

    async def smaller() -> Value:
        return Value(2, 500)

    await cache.get(key(2), smaller, refresh=True)  # the latest read again, and smaller: it replaces
    assert set(cache._entries) == {key(0), key(1), key(2)}
    assert held(cache) == 2500
    await feed(cache, range(3, 4), size_bytes=500)  # room for it without evicting
    assert set(cache._entries) == {key(0), key(1), key(2), key(3)}
    await feed(cache, range(4, 5), size_bytes=2000)  # the least recently used two make room
    assert set(cache._entries) == {key(2), key(3), key(4)}
    assert held(cache) == 3000
    await feed(cache, range(5, 6), size_bytes=3000)  # exactly the budget: kept, alone
    assert set(cache._entries) == {key(5)}
    assert held(cache) == 3000


async def test_an_expired_list_whose_read_again_fails_holds_nothing() -> None:
    now = [0.0]
    cache = ListCache(ttl_seconds=30, clock=lambda: now[0])
    await feed(cache, range(1), size_bytes=1000)
    now[0] += 30

    async def failing_fetch() -> Value:
        raise RuntimeError("Census is down")

    with pytest.raises(RuntimeError):
        await cache.get(key(0), failing_fetch)
    assert not cache._entries
    assert held(cache) == 0


async def fetched_across_a_write(
    cache: ListCache, read: CacheKey, fetch: Callable[[], Awaitable[Value]]
) -> None:
    """A read of `read` that is still fetching when a write clears WORKSPACE, then finishes."""
    release = anyio.Event()

    async def slow_fetch() -> Value:
        await release.wait()
        return await fetch()

    async with anyio.create_task_group() as group:
        group.start_soon(cache.get, read, slow_fetch)
        await anyio.sleep(0.05)
        await cache.clear(WORKSPACE)
        release.set()


async def test_a_write_to_one_workspace_leaves_a_read_of_another_to_be_kept() -> None:
    cache = ListCache(ttl_seconds=30)

    async def fetch() -> Value:
        return Value(1)

    other = key("list", workspace="https://census.test/api/v2")
    await fetched_across_a_write(cache, other, fetch)
    assert (await cache.get(other, fetch)).from_cache


async def test_a_fetch_begun_before_a_write_is_not_stored_after_it() -> None:
    cache = ListCache(ttl_seconds=30)
    fetches = 0

    async def fetch() -> Value:
        nonlocal fetches
        fetches += 1
        return Value(fetches)

    await fetched_across_a_write(cache, key("stale"), fetch)
    assert leftovers(cache) == 0
    assert not cache._entries
    again = await cache.get(key("stale"), fetch)
    assert (again.value.number, again.from_cache) == (2, False)
    assert (await cache.get(key("stale"), fetch)).from_cache


async def test_a_waiter_that_gives_up_leaves_nothing_behind() -> None:
    cache = ListCache(ttl_seconds=30)
    release = anyio.Event()

    async def slow_fetch() -> Value:
        await release.wait()
        return Value(1)

    async with anyio.create_task_group() as group:
        group.start_soon(cache.get, key("slow"), slow_fetch)
        await anyio.sleep(0.05)
        with anyio.move_on_after(0.05):
            await cache.get(key("slow"), slow_fetch)
        assert cache._flights[key("slow")].callers == 1
        release.set()
    assert leftovers(cache) == 0

    async def failing_fetch() -> Value:
        raise RuntimeError("Census is down")

    with pytest.raises(RuntimeError):
        await cache.get(key("failing"), failing_fetch)
    assert leftovers(cache) == 0


async def test_a_listing_weighs_what_its_pages_weigh_once_parsed(api_version: str) -> None:
    """The estimate the size bound counts: within a factor of two of what tracemalloc sees."""
    with running_sandbox(api_version, size=1000) as sandbox:
        async with sandbox.census(cache=ListCache(ttl_seconds=30)) as census:
            await census.list_source_types()  # the connection and pydantic's models, made once
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                listing = (await census.list_sources()).value
                gc.collect()
                traced = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
    assert len(listing.items) == 1000
    assert listing.size_bytes == listing.json_bytes * PARSED_BYTES_PER_JSON_BYTE
    assert traced / 2 < listing.size_bytes < traced * 2, (traced, listing.size_bytes)


async def test_a_list_over_the_budget_is_read_again_and_a_small_one_reused(api_version: str) -> None:
    with running_sandbox(api_version, size=1000) as sandbox:
        async with Client(build_server(sandbox.settings(cache_max_mb=1))) as client:
            for _ in range(2):
                await call_ok(client, "list_sources")  # 1,000 sources: several MB once parsed
                await call_ok(client, "list_source_types")  # a few dozen KB
        reads = [record.path.removeprefix(sandbox.prefix) for record in sandbox.workspace.requests]
    assert reads.count("/source_types") == 2  # pages 1 and 2, once
    assert reads.count("/sources") == 2 * 10  # ten pages, twice


def test_the_cache_bounds_are_settings_with_defaults() -> None:
    def settings(*argv: str, **env: str) -> tuple[int, float, int]:
        parsed = from_arguments(build_parser().parse_args(list(argv)), env)
        return parsed.cache_max_entries, parsed.cache_max_mb, parsed.census_connections

    assert settings() == (256, 64, 64)
    assert (ListCache(ttl_seconds=30).max_entries, ListCache(ttl_seconds=30).max_bytes) == (256, 64 * 2**20)
    env = {"CENSUS_MCP_CACHE_MAX_ENTRIES": "10", "CENSUS_MCP_CACHE_MAX_MB": "0.5"}
    assert settings(**env, CENSUS_MCP_CENSUS_CONNECTIONS="4") == (10, 0.5, 4)
    assert settings("--cache-max-entries", "20", "--census-connections", "8", **env) == (20, 0.5, 8)
    for name in ("CENSUS_MCP_CACHE_MAX_ENTRIES", "CENSUS_MCP_CACHE_MAX_MB", "CENSUS_MCP_CENSUS_CONNECTIONS"):
        with pytest.raises(SettingsError, match=name):
            settings(**{name: "0"})


def test_the_secret_key_cache_holds_only_short_names() -> None:
    from census_mcp import redaction

    redaction._is_secret_key_cached.cache_clear()  # other tests may have filled it
    held = redaction._is_secret_key_cached.cache_info().currsize
    long_keys = [f"{'x' * 10_000}_password_{number}" for number in range(100)]
    assert all(redaction.is_secret_key(name) for name in long_keys)
    assert redaction._is_secret_key_cached.cache_info().currsize == held
    assert redaction._is_secret_key_cached.cache_info().maxsize == 4096
    # Up to 64 characters a name is kept (a field name, asked about again and again); beyond, never.
    unique = secrets.token_hex(27)  # a name no test asked about before
    assert redaction.is_secret_key(f"{unique}x_password")
    assert redaction._is_secret_key_cached.cache_info().currsize == held + 1
    assert redaction.is_secret_key(f"{unique}xy_password")
    assert redaction._is_secret_key_cached.cache_info().currsize == held + 1


def test_configuring_logging_again_replaces_the_handler() -> None:
    import logging

    from census_mcp.logs import configure_logging
    from census_mcp.settings import Settings

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for _ in range(3):
            configure_logging(Settings(sandbox=True))
        assert len(root.handlers) == 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_no_cookie_census_sets_for_one_user_is_kept_or_sent_for_another() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from census_mcp.census.client import CensusClient
    from tests.conftest import serve_on_loopback

    cookies_sent: list[str | None] = []

    async def source(request: Request) -> JSONResponse:
        cookies_sent.append(request.headers.get("cookie"))
        response = JSONResponse({"status": "success", "data": {"id": 1, "name": "Warehouse"}})
        response.set_cookie("_census_session", f"session-of-{request.headers['authorization'][-5:]}")
        return response

    app = Starlette(routes=[Route("/api/v1/sources/1", source)])
    with serve_on_loopback(app) as root:
        async with CensusClient(f"{root}/api/v1", "secret-token:alice") as alice:
            await alice.get_source(1)
            await alice.with_token("secret-token:bobby").get_source(1)
            await alice.get_source(1)
    assert cookies_sent == [None, None, None]
