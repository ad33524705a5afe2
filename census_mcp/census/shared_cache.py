"""The list cache shared by every worker and host of a team server, in Redis (redis-py's asyncio
client), behind the same interface as the in-process ListCache.

Four workers on three hosts would otherwise each read the same list from Census within one
window. Here a list is read once per key per window for all of them: the first worker to miss takes
a short Redis lock and reads; the others wait for its result instead of stampeding. A write
through any worker clears the workspace's lists for all of them, by moving the workspace to a new
generation (a random one, never used before): keys of older generations are simply never read
again, and expire.

A write is never hidden by Redis coming and going. The worker that wrote announces the new
generation over a connection of its own, which waits for Redis as long as it takes: a Redis that
was only stopped takes the announcement first thing when it resumes, before whatever is sent to it
after. When Redis cannot be reached at all, the worker tries again every second until it takes
it, and meanwhile reads its lists from Census rather than trust Redis's. While Redis cannot be
reached, every worker reads its lists from Census on every call: none can know what another wrote
meanwhile. A Redis that lost its keys (restarted, or evicted them) gets a new generation, so that
no list kept from before is read again. What remains: a worker that cannot reach Redis while
others can, from its write until it stops, leaves them its workspace's lists as they were; a list
is never served more than the cache window after it was read from Census.

Redis is never a reason for a call to fail: when it cannot be reached, the server says so once,
and tries it again after a few seconds.

Values are stored as JSON, never pickled: a Redis an attacker can write to must not become code
running in every worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from census_mcp.census.cache import CacheKey, Fetched, ListCache, ListingCodec
from census_mcp.census.models import Listing

logger = logging.getLogger(__name__)
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")

_PREFIX = "census-mcp:lists"
# A Redis that does not answer within this long is treated as away: a call never waits on it.
_REDIS_TIMEOUT_SECONDS = 1.0
_RETRY_AWAY_SECONDS = 5.0
# A write waits at most _REDIS_TIMEOUT_SECONDS for Redis to take its announcement, which itself goes
# on waiting up to _ANNOUNCE_TIMEOUT_SECONDS (a stopped Redis takes it on resuming); one that Redis
# could not take is sent again every ANNOUNCE_RETRY_SECONDS.
ANNOUNCE_RETRY_SECONDS = 1.0
_ANNOUNCE_TIMEOUT_SECONDS = 30.0
# The lock is held while one worker reads Census for everyone; it expires on its own if that
# worker dies, so that others then read for themselves.
_LOCK_MILLISECONDS = 30_000
_POLL_SECONDS = 0.05


class SharedListCache:
    """ListCache's interface over Redis, with a ListCache of its own for the lists it has parsed."""

    def __init__(
        self,
        url: str,
        ttl_seconds: float,
        *,
        local: ListCache,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`clock` times the waits; `now` is the wall clock a list's age is told by (it travels
        between hosts as the time Census was read)."""
        self.ttl_seconds = ttl_seconds
        self._local = local
        self._clock = clock
        self._redis = Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        # One connection, open before it is needed and sending nothing of its own on connecting, so
        # that an announcement is sent at once, however Redis is doing.
        self._announcements = Redis.from_url(
            url,
            socket_timeout=_ANNOUNCE_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
            single_connection_client=True,
            driver_info=None,
        )
        self._away_until = float("-inf")
        self._reachable = True
        # Each workspace written to whose new generation Redis has not taken yet, with its writes.
        self._unannounced: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._retrying = False
        self._opened = False
        self._now = now

    def __repr__(self) -> str:
        return f"SharedListCache(ttl_seconds={self.ttl_seconds})"

    async def get(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[Listing[_M]]],
        *,
        refresh: bool = False,
        codec: ListingCodec[_M] | None = None,
    ) -> Fetched[Listing[_M]]:
        """The list for `key`: from Redis while fresh, else read once for every worker.

        What a worker got from Redis it keeps, parsed, in its own bounded cache under the
        workspace's current generation, so that a hit costs one small read of the generation
        rather than parsing the whole list again.
        """
        if self.ttl_seconds <= 0 or codec is None:
            return await self._local.get(key, fetch, refresh=refresh)
        if not self._opened:
            self._opened = True
            self._in_background(self._announce())  # opens the announcements' connection
        if self._unannounced or self._away():
            # Redis's lists may predate a write: this worker's own, not yet announced, or another
            # worker's, announced while Redis was away.
            return Fetched(await fetch(), datetime.now(UTC), from_cache=False)
        try:
            generation = await self._generation(key[0])
            data = _data_key(key, generation)

            async def from_redis() -> _Parsed[_M]:
                return _Parsed(await self._shared(key[0], data, generation, fetch, refresh, codec))

            near = await self._local.get((key[0], key[1], data), from_redis, refresh=refresh)
            if (
                near.from_cache
                and self._now() - near.value.fetched.fetched_at.timestamp() >= self.ttl_seconds
            ):
                # Kept here longer than the window since Census was read: ask Redis again.
                near = await self._local.get((key[0], key[1], data), from_redis, refresh=True)
        except _RedisAway:
            return Fetched(await fetch(), datetime.now(UTC), from_cache=False)
        fetched = near.value.fetched
        return Fetched(fetched.value, fetched.fetched_at, from_cache=near.from_cache or fetched.from_cache)

    async def clear(self, workspace: str) -> None:
        """Every worker's lists of this workspace are stale after a write: move it to a new
        generation, waiting a moment for Redis to take it, and trying until it does."""
        await self._local.clear(workspace)
        self._unannounced[workspace] = self._unannounced.get(workspace, 0) + 1
        with anyio.move_on_after(_REDIS_TIMEOUT_SECONDS):
            await asyncio.shield(self._in_background(self._announce()))
        if self._unannounced and not self._retrying:
            self._retrying = True
            self._in_background(self._announce_until_taken())

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self._announcements.aclose()
        await self._redis.aclose()

    def _in_background(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _announce(self) -> None:
        """Announce each write Redis has not taken; with none, open the connection for later ones."""
        try:
            if not self._unannounced:
                await self._announcements.ping()
            for workspace, writes in sorted(self._unannounced.items()):
                await self._announcements.set(_generation_key(workspace), secrets.token_hex(8))
                if self._unannounced.get(workspace) == writes:
                    del self._unannounced[workspace]
                self._came_back()
        except RedisError as exc:
            self._went_away(exc)

    async def _announce_until_taken(self) -> None:
        try:
            while self._unannounced:
                await anyio.sleep(ANNOUNCE_RETRY_SECONDS)
                await self._announce()
        finally:
            self._retrying = False

    async def _generation(self, workspace: str) -> bytes:
        """The workspace's generation; a new one where Redis has none (restarted, or evicted it)."""
        key = _generation_key(workspace)
        generation: bytes | None = await self._call(self._redis.get(key))
        if generation is None:
            await self._call(self._redis.set(key, secrets.token_hex(8), nx=True))
            generation = await self._call(self._redis.get(key))
        return generation or b""

    async def _shared(
        self,
        workspace: str,
        data: str,
        generation: bytes,
        fetch: Callable[[], Awaitable[Listing[_M]]],
        refresh: bool,
        codec: ListingCodec[_M],
    ) -> Fetched[Listing[_M]]:
        if not refresh and (hit := await self._cached(data, codec)) is not None:
            return hit
        holder = secrets.token_hex(8)
        if await self._call(self._redis.set(f"{data}:lock", holder, nx=True, px=_LOCK_MILLISECONDS)):
            return await self._read_for_everyone(workspace, data, generation, fetch, codec, holder)
        # Another worker is reading Census for this key: wait for what it stores.
        waited_until = self._clock() + _LOCK_MILLISECONDS / 1000
        while self._clock() < waited_until:
            await anyio.sleep(_POLL_SECONDS)
            if (hit := await self._cached(data, codec)) is not None:
                return hit
            if not await self._call(self._redis.exists(f"{data}:lock")):
                break  # it gave up (Census failed it): read for ourselves
        return await self._read_for_everyone(workspace, data, generation, fetch, codec, None)

    async def _read_for_everyone(
        self,
        workspace: str,
        data: str,
        generation: bytes,
        fetch: Callable[[], Awaitable[Listing[_M]]],
        codec: ListingCodec[_M],
        holder: str | None,
    ) -> Fetched[Listing[_M]]:
        try:
            fetched = Fetched(await fetch(), datetime.now(UTC), from_cache=False)
            try:
                # Stored only if no write moved the workspace on while Census was read.
                if await self._call(self._redis.get(_generation_key(workspace))) == generation:
                    ttl = max(1, int(self.ttl_seconds * 1000))
                    await self._call(self._redis.set(data, codec.encode(fetched), px=ttl))
            except _RedisAway:
                pass  # the list was read: the caller has it, whether or not Redis keeps it
            return fetched
        finally:
            # After storing: those waiting find the list, not a free lock and an empty key.
            if holder is not None:
                await self._release(f"{data}:lock", holder)

    async def _cached(self, data: str, codec: ListingCodec[_M]) -> Fetched[Listing[_M]] | None:
        raw = await self._call(self._redis.get(data))
        if raw is None:
            return None
        try:
            return codec.decode(raw)
        except ValueError:
            return None  # not something this server wrote: read Census instead

    async def _release(self, lock: str, holder: str) -> None:
        try:
            if await self._redis.get(lock) == holder.encode():
                await self._redis.delete(lock)
        except RedisError as exc:
            self._went_away(exc)

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            answer = await pending
        except RedisError as exc:
            self._went_away(exc)
            raise _RedisAway from None
        self._came_back()
        return answer

    def _away(self) -> bool:
        return self._clock() < self._away_until

    def _went_away(self, exc: RedisError) -> None:
        if self._reachable:
            logger.warning(
                "The shared cache (Redis) cannot be reached (%s): lists are read from Census on every "
                "call, and Redis is tried again every %.0f s.",
                type(exc).__name__,
                _RETRY_AWAY_SECONDS,
            )
        self._reachable = False
        self._away_until = self._clock() + _RETRY_AWAY_SECONDS

    def _came_back(self) -> None:
        if not self._reachable:
            logger.warning("The shared cache (Redis) answers again.")
        self._reachable = True


@dataclass(frozen=True)
class _Parsed(Generic[_M]):
    """A list as read from Redis (or Census), kept parsed in a worker's own cache."""

    fetched: Fetched[Listing[_M]]

    @property
    def size_bytes(self) -> int:
        return self.fetched.value.size_bytes


class _RedisAway(Exception):
    """Redis failed this call; the caller falls back to the worker's own cache."""


def _generation_key(workspace: str) -> str:
    return f"{_PREFIX}:{_digest(workspace)}:generation"


def _data_key(key: CacheKey, generation: bytes) -> str:
    workspace, token, what = key
    return f"{_PREFIX}:{_digest(workspace)}:{generation.decode(errors='replace')}:{token}:{_digest(what)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]
