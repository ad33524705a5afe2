"""Recently read lists, so that paging and re-filtering within one turn reuse one fetch.

An assistant calls list_sources again and again while it pages and filters; reading the
whole workspace for each call would cost the user seconds per call. Entries live for a
short window, are keyed by workspace (base URL) and token, and every write through this
server clears its workspace's entries. Concurrent misses on one key share one fetch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio

T = TypeVar("T")
CacheKey = tuple[str, str, str]


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """A value and when it was read from Census."""

    value: T
    fetched_at: datetime
    from_cache: bool


def token_digest(token: str) -> str:
    """A stand-in for the token in cache keys, so that no cache structure holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


class ListCache:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[CacheKey, tuple[float, Fetched[Any]]] = {}
        self._locks: dict[CacheKey, anyio.Lock] = {}
        # Bumped by clear(): a fetch that began before a write must not be stored after it.
        self._generation: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ListCache(ttl_seconds={self.ttl_seconds}, entries={len(self._entries)})"

    async def get(
        self, key: CacheKey, fetch: Callable[[], Awaitable[T]], *, refresh: bool = False
    ) -> Fetched[T]:
        """The cached value for `key` while fresh, else a new fetch (one at a time per key)."""
        if self.ttl_seconds <= 0:
            return Fetched(await fetch(), datetime.now(UTC), from_cache=False)
        # A fresh entry is served without queueing behind a fetch of the same key.
        if not refresh and (hit := self._fresh(key)) is not None:
            return hit
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            # A caller that queued here while another fetched gets that fetch, not a new one.
            if not refresh and (hit := self._fresh(key)) is not None:
                return hit
            started, generation = self._clock(), self._generation.get(key[0], 0)
            fetched = Fetched(await fetch(), datetime.now(UTC), from_cache=False)
            if generation == self._generation.get(key[0], 0):
                self._evict_expired()
                self._entries[key] = (started, fetched)
            return fetched

    def _fresh(self, key: CacheKey) -> Fetched[Any] | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] >= self.ttl_seconds:
            return None
        return Fetched(entry[1].value, entry[1].fetched_at, from_cache=True)

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [key for key, (started, _) in self._entries.items() if now - started >= self.ttl_seconds]:
            del self._entries[key]

    def clear(self, workspace: str) -> None:
        """Forget every list of this workspace (base URL), whatever the token: a write changed it."""
        self._generation[workspace] = self._generation.get(workspace, 0) + 1
        for key in [key for key in self._entries if key[0] == workspace]:
            del self._entries[key]
