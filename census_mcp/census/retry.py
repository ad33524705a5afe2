"""When and how long to wait before asking Census again.

Census rate-limits and fails now and then; its own Terraform provider retries 429 with
exponential backoff, honouring Retry-After. This does at least that, for every request
that is safe to repeat, within a bound on attempts and on total time. Clock, sleep and
randomness are injected so that tests run in microseconds.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Repeating these has the same effect as sending them once (PATCH sends the same body).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("census_deadline", default=None)


@contextmanager
def deadline(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Everything Census is asked within this block, retries included, ends by `seconds` from now."""
    token = _deadline.set(clock() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    budget_seconds: float = 45.0
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0
    unreachable_seconds: float = 2.0
    """How long to keep trying a host that refuses connections or does not resolve: a blip heals in
    this time, a wrong address never does, and the user should hear so at once."""
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    jitter: Callable[[], float] = random.random

    def remaining(self, started: float, *, unreachable: bool = False) -> float:
        """Seconds left for this request: the retry budget, or the caller's deadline if sooner; for
        a host that cannot be reached, the short budget for that."""
        budget = self.unreachable_seconds if unreachable else self.budget_seconds
        left = budget - (self.clock() - started)
        until_deadline = _deadline.get()
        return left if until_deadline is None else min(left, until_deadline - self.clock())

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """The wait before attempt `attempt + 1`: what Census asked for, else backoff with jitter."""
        asked = self.parse_retry_after(retry_after)
        if asked is not None:
            return asked
        ceiling: float = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (attempt - 1))
        # "Equal jitter": never less than half the backoff, so retries stay spread out.
        return ceiling / 2 + self.jitter() * ceiling / 2

    def parse_retry_after(self, value: str | None) -> float | None:
        """Retry-After in seconds, from seconds or an HTTP date; None when absent or unreadable."""
        if not value:
            return None
        text = value.strip()
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self.now()).total_seconds())
