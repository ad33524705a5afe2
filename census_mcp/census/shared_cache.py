"""The list cache shared by every worker and host of a team server, in Redis (redis-py's asyncio
client), behind the same interface as the in-process ListCache.

Four workers on three hosts would otherwise each read the same list from Census within one
window. Here a list is read once per key per window for all of them: the first worker to miss takes
a short Redis lock and reads; the others wait for its result instead of stampeding. A write
through any worker clears the workspace's lists for all of them, by moving the workspace to a new
generation (one INCR): keys of older generations are simply never read again, and expire.

Redis is never a reason for a call to fail. When it cannot be reached, the server uses each
worker's own bounded ListCache, says so once, and tries Redis again after a while.

Values are stored as JSON, never pickled: a Redis an attacker can write to must not become code
running in every worker.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
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

_PREFIX = "census-mcp:lists"
# A Redis that does not answer within this long is treated as away: a call never waits on it.
_REDIS_TIMEOUT_SECONDS = 1.0
_RETRY_AWAY_SECONDS = 30.0
# The lock is held while one worker reads Census for everyone; it expires on its own if that
# worker dies, so that others then read for themselves.
_LOCK_MILLISECONDS = 30_000
_POLL_SECONDS = 0.05


class SharedListCache:
    """ListCache's interface over Redis, with a ListCache of its own to fall back on."""

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
        self._away_until = float("-inf")
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
        if self.ttl_seconds <= 0 or codec is None or self._away():
            return await self._local.get(key, fetch, refresh=refresh)
        try:
            generation = await self._call(self._redis.get(_generation_key(key[0])))
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
            return await self._local.get(key, fetch, refresh=refresh)
        fetched = near.value.fetched
        return Fetched(fetched.value, fetched.fetched_at, from_cache=near.from_cache or fetched.from_cache)

    async def clear(self, workspace: str) -> None:
        """Every worker's lists of this workspace are stale after a write: move it to a new generation."""
        await self._local.clear(workspace)
        if not self._away():
            try:
                await self._redis.incr(_generation_key(workspace))
            except RedisError as exc:
                self._went_away(exc)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def _shared(
        self,
        workspace: str,
        data: str,
        generation: bytes | None,
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
        generation: bytes | None,
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
            return await pending
        except RedisError as exc:
            self._went_away(exc)
            raise _RedisAway from None

    def _away(self) -> bool:
        return self._clock() < self._away_until

    def _went_away(self, exc: RedisError) -> None:
        if not self._away():
            logger.warning(
                "The shared cache (Redis) cannot be reached (%s): each worker uses its own cache, "
                "and Redis is tried again in %.0f s.",
                type(exc).__name__,
                _RETRY_AWAY_SECONDS,
            )
        self._away_until = self._clock() + _RETRY_AWAY_SECONDS


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


def _data_key(key: CacheKey, generation: bytes | None) -> str:
    workspace, token, what = key
    return f"{_PREFIX}:{_digest(workspace)}:{int(generation or 0)}:{token}:{_digest(what)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]
