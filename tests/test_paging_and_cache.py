"""Concurrent paging, the short-lived list cache and its invalidation, counted at the sandbox."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from census_mcp.census.cache import Fetched, ListCache, codec_for
from census_mcp.census.models import Listing, Source
from census_mcp.sandbox.app import RequestRecord
from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_ok, wire_bytes

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Value:
    """A cached value as the cache sees one: something with a size."""

    number: int
    size_bytes: int = 0


def _list_reads(sandbox: Sandbox) -> list[RequestRecord]:
    return [r for r in sandbox.workspace.requests if r.method == "GET" and r.path.endswith("/sources")]


def _page(record: RequestRecord) -> int:
    return int(dict(part.split("=") for part in record.query.split("&"))["page"])


def _most_in_flight(records: list[RequestRecord]) -> int:
    events = sorted([(r.started, 1) for r in records] + [(r.finished, -1) for r in records])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


async def test_a_thousand_sources_take_ten_gets_in_two_waves(api_version: str) -> None:
    # 0.2 s per request: wide enough that the waves stay apart on a busy machine.
    with running_sandbox(api_version, size=1000, latency_seconds=0.2) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            result = await call_ok(client, "list_sources", {"limit": 100})
        reads = _list_reads(sandbox)
        assert sorted(_page(r) for r in reads) == list(range(1, 11))
        by_page = {_page(r): r for r in reads}
        # Page 2 goes out with page 1, before last_page is known...
        assert by_page[2].started < by_page[1].finished
        # ...and pages 3-10 all go out together once page 1 has answered.
        rest = [by_page[n] for n in range(3, 11)]
        assert all(r.started >= by_page[1].finished for r in rest)
        assert max(r.started for r in rest) < min(r.finished for r in rest)
        data = result.structured_content
        assert data is not None
        ids = sorted(sandbox.workspace.sources, reverse=True)
        shown = [item["id"] for item in data["sources"]]
        # 100 asked for; only the 24 KB cap may cut a few (more on v2, whose rows carry a group).
        assert len(shown) == 100 or wire_bytes(result) > 24 * 1024 - 512
        assert len(shown) >= 75
        assert data["next_offset"] == len(shown)
        assert shown == ids[: len(shown)]
        assert data["workspace_total"] == 1000


async def test_page_concurrency_bounds_the_requests_in_flight(api_version: str) -> None:
    with running_sandbox(api_version, size=1000, latency_seconds=0.02) as sandbox:
        async with Client(build_server(sandbox.settings(page_concurrency=3))) as client:
            await call_ok(client, "list_sources")
        reads = _list_reads(sandbox)
        assert len(reads) == 10
        assert _most_in_flight(reads) <= 3
        assert _most_in_flight([r for r in reads if _page(r) >= 3]) == 3


async def test_a_small_workspace_wastes_at_most_one_empty_page(client: Client, sandbox: Sandbox) -> None:
    await call_ok(client, "list_sources")
    assert sorted(_page(r) for r in _list_reads(sandbox)) == [1, 2]


async def test_paging_and_refiltering_reuse_one_read(client: Client, sandbox: Sandbox) -> None:
    first = await call_ok(client, "list_sources", {"limit": 10})
    assert result_text(first).splitlines()[-1].startswith("Read from Census at")
    await call_ok(client, "list_sources", {"limit": 10, "offset": 10})
    again = await call_ok(client, "list_sources", {"test_status": "failed"})
    assert len(_list_reads(sandbox)) == 2  # one read: pages 1 and 2
    assert "From a list read" in result_text(again)
    assert "refresh=true" in result_text(again)
    assert first.structured_content is not None
    assert again.structured_content is not None
    assert again.structured_content["fetched_at"] == first.structured_content["fetched_at"]
    fresh = await call_ok(client, "list_sources", {"refresh": True})
    assert len(_list_reads(sandbox)) == 4
    assert result_text(fresh).splitlines()[-1].startswith("Read from Census at")


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (
            "create_source",
            {
                "type": "postgres",
                "credentials": {"hostname": "h", "port": 5432, "user": "u", "password": "p", "database": "d"},
            },
        ),
        ("update_source", {"source_id": 4, "label": "Renamed"}),
        ("delete_source", {"source_id": 4}),
        ("refresh_source_tables", {"source_id": 4}),
    ],
)
async def test_every_write_clears_the_cache(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]
) -> None:
    await call_ok(client, "list_sources")
    if tool == "delete_source":
        arguments = arguments | {"confirm_name": sandbox.workspace.sources[4]["name"]}
    await call_ok(client, tool, arguments)
    after = await call_ok(client, "list_sources", {"limit": 100})
    assert len(_list_reads(sandbox)) == 4
    data = after.structured_content
    assert data is not None
    assert data["total"] == len(sandbox.workspace.sources)
    if tool == "update_source":
        assert next(s for s in data["sources"] if s["id"] == 4)["label"] == "Renamed"


@dataclass
class HeldListAnswers:
    """In front of the sandbox: a list read is answered from the workspace as it is when the read
    arrives, but its answer is held back until `release`, so a write can land in between."""

    read: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def held(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].endswith("/sources"):
                await app(scope, receive, send)
                return
            answer: list[Message] = []

            async def keep(message: Message) -> None:
                answer.append(message)

            await app(scope, receive, keep)
            self.read.set()
            for _ in range(1000):  # at most 10 s, so a test that fails never hangs the server
                if self.release.is_set():
                    break
                await asyncio.sleep(0.01)
            for message in answer:
                await send(message)

        return held


async def test_a_list_read_racing_a_write_is_not_served_after_it(api_version: str) -> None:
    """A list read that began before a rename, and answered after it, shows the old label once; the
    next list must show the new label, not that stale read from the cache."""
    held = HeldListAnswers()
    held.release.set()
    with running_sandbox(api_version, wrap=held.wrap) as sandbox:
        async with Client(build_server(sandbox.settings())) as client:
            # A write before, so that the race is not the workspace's first.
            await call_ok(client, "update_source", {"source_id": 5, "label": "Renamed before"})
            held.release.clear()
            async with anyio.create_task_group() as group:
                group.start_soon(call_ok, client, "list_sources", {"limit": 100})
                assert await anyio.to_thread.run_sync(held.read.wait, 10)
                await call_ok(client, "update_source", {"source_id": 4, "label": "Renamed meanwhile"})
                held.release.set()
            after = await call_ok(client, "list_sources", {"limit": 100})
            reads = len(_list_reads(sandbox))
            again = await call_ok(client, "list_sources", {"limit": 100})
        assert len(_list_reads(sandbox)) == reads, "the read after the write is cached as usual"
    assert after.structured_content is not None
    (renamed,) = [source for source in after.structured_content["sources"] if source["id"] == 4]
    assert renamed["label"] == "Renamed meanwhile"
    assert again.structured_content == after.structured_content


async def test_a_failed_write_clears_the_cache_too(client: Client, sandbox: Sandbox) -> None:
    await call_ok(client, "list_sources")
    failed = await client.call_tool("update_source", {"source_id": 99999, "label": "x"})
    assert failed.is_error
    await call_ok(client, "list_sources")
    assert len(_list_reads(sandbox)) == 4


async def test_zero_seconds_disables_the_cache(api_version: str) -> None:
    with running_sandbox(api_version) as sandbox:
        async with Client(build_server(sandbox.settings(cache_seconds=0))) as client:
            await call_ok(client, "list_sources")
            second = await call_ok(client, "list_sources", {"offset": 25})
        assert len(_list_reads(sandbox)) == 4
        assert result_text(second).splitlines()[-1].startswith("Read from Census at")


async def test_the_cache_is_keyed_by_token(api_version: str) -> None:
    other = "secret-token:second-user"
    with running_sandbox(api_version, tokens=("secret-token:first-user", other)) as sandbox:
        cache = ListCache(ttl_seconds=30)
        first = sandbox.census(cache=cache)
        second = sandbox.census(other, cache=cache)
        async with first, second:
            await first.list_sources()
            await first.list_sources()
            assert len(_list_reads(sandbox)) == 2
            fetched = await second.list_sources()
            assert not fetched.from_cache
            assert len(_list_reads(sandbox)) == 4
            await second.list_sources()
            assert len(_list_reads(sandbox)) == 4
        assert "sandbox" not in repr(cache)


async def test_entries_expire_after_the_window() -> None:
    now = [100.0]
    cache = ListCache(ttl_seconds=30, clock=lambda: now[0])
    reads = []

    async def fetch() -> Value:
        reads.append(now[0])
        return Value(len(reads))

    key = ("https://census.test/api/v1", "digest", "sources")
    other = ("https://census.test/api/v1", "digest", "source_types")
    assert (await cache.get(key, fetch)).value.number == 1
    now[0] += 29
    assert (await cache.get(key, fetch)).from_cache
    now[0] += 1
    assert (await cache.get(key, fetch)).value.number == 2  # 30 s old: past the window
    now[0] += 30
    assert (await cache.get(other, fetch)).value.number == 3
    # Expired entries go when room is needed (tests/test_bounds.py), not on every store.
    await cache.clear("https://census.test/api/v1")
    assert (await cache.get(key, fetch)).value.number == 4


async def test_a_one_second_window_still_caches() -> None:
    now = [100.0]
    cache = ListCache(ttl_seconds=1, clock=lambda: now[0])

    async def fetch() -> Value:
        return Value(1)

    key = ("https://census.test/api/v1", "digest", "sources")
    assert not (await cache.get(key, fetch)).from_cache
    now[0] += 0.5
    assert (await cache.get(key, fetch)).from_cache


async def test_a_token_never_reaches_the_cache_key(api_version: str) -> None:
    cache = ListCache(ttl_seconds=30)
    with running_sandbox(api_version) as sandbox:
        async with sandbox.census(cache=cache) as census:
            await census.list_sources()
    assert cache._entries
    assert all(sandbox.token not in part for key in cache._entries for part in key)


def test_settings_carry_the_window_and_cap() -> None:
    from census_mcp.cli import build_parser
    from census_mcp.settings import from_arguments

    parsed = build_parser().parse_args(["--cache-seconds", "0", "--max-result-bytes", "4096"])
    settings = from_arguments(parsed, {"CENSUS_API_TOKEN": "secret-token:x"})
    assert settings.cache_seconds == 0
    assert settings.max_result_bytes == 4096
    assert isinstance(settings.token, SecretStr)


async def test_concurrent_misses_share_one_fetch_and_hits_do_not_queue() -> None:
    import anyio

    cache = ListCache(ttl_seconds=30)
    fetches = 0
    release = anyio.Event()

    async def slow_fetch() -> Value:
        nonlocal fetches
        fetches += 1
        await release.wait()
        return Value(fetches)

    key = ("https://census.test/api/v1", "digest", "sources")
    results: list[int] = []

    async def read() -> None:
        results.append((await cache.get(key, slow_fetch)).value.number)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(read)
        await anyio.sleep(0.05)
        release.set()
    assert fetches == 1
    assert results == [1] * 5
    # A fresh entry answers even while a forced refresh of the same key is in flight.
    release = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: cache.get(key, slow_fetch, refresh=True))
        await anyio.sleep(0.05)
        with anyio.fail_after(1):
            assert (await cache.get(key, slow_fetch)).from_cache
        release.set()
    assert fetches == 2
    # A miss on another key does not queue behind a fetch in flight.
    release = anyio.Event()
    other = ("https://census.test/api/v1", "digest", "source_types")

    async def quick_fetch() -> Value:
        return Value(-1)

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: cache.get(key, slow_fetch, refresh=True))
        await anyio.sleep(0.05)
        with anyio.fail_after(1):
            assert (await cache.get(other, quick_fetch)).value.number == -1
        release.set()
    assert fetches == 3


def test_a_listing_travels_to_a_shared_cache_and_back_unchanged() -> None:
    """What one worker stores in Redis, another reads back: every row, the total, the size and the
    time it was read, marked as from the cache."""
    rows = [Source(id=1, name="warehouse", type="snowflake", group_id="grp_a"), Source(id=2, label="lake")]
    read_at = datetime(2026, 12, 1, 9, 30, 15, 250000, tzinfo=UTC)
    fetched = Fetched(Listing(rows, total=2, json_bytes=731), read_at, from_cache=False)
    raw = codec_for(Source).encode(fetched)
    back = codec_for(Source).decode(raw)
    assert back.value.items == rows
    assert (back.value.total, back.value.json_bytes) == (2, 731)
    assert back.fetched_at == read_at
    assert back.from_cache is True
