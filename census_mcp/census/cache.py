"""Recently read lists, so that paging and re-filtering within one turn reuse one fetch.

An assistant calls list_sources again and again while it pages and filters; reading the
whole workspace for each call would cost the user seconds per call. Entries live for a
short window, are keyed by workspace (base URL) and token, and every write through this
server clears its workspace's entries. Concurrent misses on one key share one fetch.

A server runs for months and meets many tokens and ever-new searches, so the cache is bounded
by number and size, not only by time: at most `max_entries` lists and about `max_bytes` of parsed
data, evicting the expired first, then the least recently used. What makes concurrent misses share
a fetch lives only while someone fetches or waits, so nothing here outlives its entry.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import anyio
from pydantic import BaseModel, TypeAdapter

from census_mcp.census.models import Listing

CacheKey = tuple[str, str, str]
DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Weighed(Protocol):
    """A value that knows about how much memory it takes."""

    @property
    def size_bytes(self) -> int: ...


T = TypeVar("T")
V = TypeVar("V", bound=Weighed)
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """A value, when it was read, and from where (Census, or the built-in sandbox: the client that
    read it says which)."""

    value: T
    fetched_at: datetime
    from_cache: bool
    origin: str | None = None


class ListingCodec(Generic[_M]):
    """A fetched list of rows as JSON and back, validated as its model on the way back in: how a
    list travels to a cache shared between processes."""

    def __init__(self, model: type[_M]) -> None:
        self._rows: TypeAdapter[list[_M]] = TypeAdapter(list[model])  # type: ignore[valid-type]

    def encode(self, fetched: Fetched[Listing[_M]]) -> bytes:
        listing = fetched.value
        at = fetched.fetched_at.timestamp()
        head = {"total": listing.total, "json_bytes": listing.json_bytes, "at": at}
        return _HEAD.dump_json(head) + b"\n" + self._rows.dump_json(listing.items)

    def decode(self, raw: bytes) -> Fetched[Listing[_M]]:
        head, _, rows = raw.partition(b"\n")
        meta = _HEAD.validate_json(head)
        listing = Listing(self._rows.validate_json(rows), int(meta["total"]), int(meta["json_bytes"]))
        return Fetched(listing, datetime.fromtimestamp(meta["at"], UTC), from_cache=True)


_HEAD: TypeAdapter[dict[str, float]] = TypeAdapter(dict[str, float])


@functools.lru_cache(maxsize=16)
def codec_for(model: type[_M]) -> ListingCodec[_M]:
    """One codec per model: building its validator takes far longer than using it."""
    return ListingCodec(model)


class ListStore(Protocol):
    """What the Census client needs of a list cache: ListCache in process, SharedListCache in Redis."""

    async def get(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[Listing[_M]]],
        *,
        refresh: bool = False,
        codec: ListingCodec[_M] | None = None,
    ) -> Fetched[Listing[_M]]: ...

    async def clear(self, workspace: str) -> None: ...


def token_digest(token: str) -> str:
    """A stand-in for the token in cache keys, so that no cache structure holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Entry:
    started: float
    fetched: Fetched[Any]
    size_bytes: int


@dataclass
class _Flight:
    """The fetch of one key and the callers queued behind it; dropped when the last of them leaves."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    callers: int = 0
    # Set by clear(): a fetch that began before a write must not be stored after it.
    cleared: bool = False


class ListCache:
    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # Least recently used first.
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._flights: dict[CacheKey, _Flight] = {}

    def __repr__(self) -> str:
        return (
            f"ListCache(ttl_seconds={self.ttl_seconds}, entries={len(self._entries)}, "
            f"size_bytes={self._bytes})"
        )

    async def get(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[V]],
        *,
        refresh: bool = False,
        codec: ListingCodec[Any] | None = None,
    ) -> Fetched[V]:
        """The cached value for `key` while fresh, else a new fetch (one at a time per key). Values
        stay objects in process; `codec` is for a shared cache, which stores them as JSON."""
        if self.ttl_seconds <= 0:
            return Fetched(await fetch(), datetime.now(UTC), from_cache=False)
        # A fresh entry is served without queueing behind a fetch of the same key.
        if not refresh and (hit := self._fresh(key)) is not None:
            return hit
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
        flight.callers += 1
        try:
            async with flight.lock:
                # A caller that queued here while another fetched gets that fetch, not a new one.
                if not refresh and (hit := self._fresh(key)) is not None:
                    return hit
                flight.cleared = False
                started = self._clock()
                fetched = Fetched(await fetch(), datetime.now(UTC), from_cache=False)
                if not flight.cleared:
                    self._store(key, _Entry(started, fetched, fetched.value.size_bytes))
                return fetched
        finally:
            flight.callers -= 1
            if not flight.callers:
                del self._flights[key]

    def _fresh(self, key: CacheKey) -> Fetched[Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._expired(entry):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return Fetched(entry.fetched.value, entry.fetched.fetched_at, from_cache=True)

    def _expired(self, entry: _Entry) -> bool:
        return self._clock() - entry.started >= self.ttl_seconds

    def _store(self, key: CacheKey, entry: _Entry) -> None:
        """Keep `entry`, making room for it: the expired go first, then the least recently used.
        A list larger than the whole budget is not kept at all."""
        self._drop(key)
        if entry.size_bytes > self.max_bytes:
            return
        if not self._fits(entry):
            for expired in [old for old, kept in self._entries.items() if self._expired(kept)]:
                self._drop(expired)
        while not self._fits(entry):
            self._drop(next(iter(self._entries)))
        self._entries[key] = entry
        self._bytes += entry.size_bytes

    def _fits(self, entry: _Entry) -> bool:
        return len(self._entries) < self.max_entries and self._bytes + entry.size_bytes <= self.max_bytes

    def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size_bytes

    async def clear(self, workspace: str) -> None:
        """Forget every list of this workspace (base URL), whatever the token: a write changed it."""
        for key in [key for key in self._entries if key[0] == workspace]:
            self._drop(key)
        for key, flight in self._flights.items():
            if key[0] == workspace:
                flight.cleared = True
