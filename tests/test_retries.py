"""Retries in the Census client, with an injected sleep and clock so they run in microseconds."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from census_mcp.census.client import CensusClient
from census_mcp.census.errors import (
    CensusConnectionError,
    CensusNotFoundError,
    CensusRequestError,
    CensusUnavailableError,
    CensusUnknownOutcomeError,
    CensusUnsendableError,
)
from census_mcp.census.retry import RetryPolicy, deadline
from census_mcp.sandbox import SANDBOX_TOKEN, FaultConfig
from census_mcp.sandbox.faults import BEFORE_API_FAULTS, NO_FAULTS
from tests.conftest import Sandbox, running_sandbox

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
POSTGRES = {"hostname": "db", "port": 5432, "user": "u", "password": "p", "database": "d"}


@dataclass
class FakeTime:
    """A clock that only moves when the client sleeps: retries cost no real time."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    on_sleep: list[object] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def healing(self, sandbox: Sandbox, *, after: int = 1) -> Callable[[float], Awaitable[None]]:
        """A sleep that turns the sandbox's faults off once the client has waited `after` times."""

        async def sleep(seconds: float) -> None:
            await self.sleep(seconds)
            if len(self.sleeps) == after:
                sandbox.workspace.faults = NO_FAULTS

        return sleep

    def policy(self, **overrides: object) -> RetryPolicy:
        values: dict[str, object] = {
            "sleep": self.sleep,
            "clock": lambda: self.now,
            "now": lambda: NOW,
            "jitter": lambda: 0.5,
        }
        return RetryPolicy(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
def faulty(api_version: str) -> Iterator[Sandbox]:
    with running_sandbox(api_version) as sandbox:
        yield sandbox


def _client(sandbox: Sandbox, time: FakeTime, **overrides: object) -> CensusClient:
    return sandbox.census(retry=time.policy(**overrides), timeout_seconds=0.5)


def _attempts(sandbox: Sandbox, method: str, path_end: str) -> int:
    return sum(1 for r in sandbox.workspace.requests if r.method == method and r.path.endswith(path_end))


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "html", "drop", "truncated", "malformed"])
async def test_reads_are_retried_until_they_succeed(faulty: Sandbox, kind: str) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,))
    async with _client(faulty, time, sleep=time.healing(faulty, after=2)) as census:
        source = await census.get_source(5)
    assert source.id == 5
    assert _attempts(faulty, "GET", "/sources/5") == 3
    assert len(time.sleeps) == 2


async def test_a_read_timeout_is_retried(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("slow",), slow_seconds=2)
    async with _client(faulty, time, sleep=time.healing(faulty)) as census:
        assert (await census.get_source(5)).id == 5
    assert _attempts(faulty, "GET", "/sources/5") == 2


async def test_backoff_grows_exponentially_with_jitter(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("503",))
    async with _client(faulty, time, max_attempts=5, base_delay_seconds=0.5, max_delay_seconds=3) as census:
        with pytest.raises(CensusUnavailableError) as failure:
            await census.get_source(5)
    # Equal jitter at 0.5: three quarters of 0.5, 1, 2, then the 3 s ceiling.
    assert time.sleeps == [0.375, 0.75, 1.5, 2.25]
    assert "Gave up after 5 attempts over 4.9 s" in failure.value.message
    assert "HTTP 503" in failure.value.message
    assert _attempts(faulty, "GET", "/sources/5") == 5


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [
        ("2", 2.0),
        ("0.25", 0.25),
        (format_datetime(datetime(2026, 11, 29, 12, 0, 7, tzinfo=UTC), usegmt=True), 7.0),
        ("Sun, 29 Nov 2026 13:00:07 +0100", 7.0),
        ("Sun, 29 Nov 2026 12:00:07 -0000", 7.0),  # RFC 5322: an unknown zone, read as UTC
        ("Sun, 29 Nov 2026 11:59:50 GMT", 0.0),  # already past: ask again at once
        ("in a moment", 0.375),  # unreadable: the usual backoff
    ],
    ids=["seconds", "fraction", "http-date", "offset", "unknown-zone", "past", "unreadable"],
)
async def test_retry_after_is_honoured_in_seconds_or_as_a_date(
    faulty: Sandbox, retry_after: str, waited: float
) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("429",), retry_after=retry_after)
    async with _client(faulty, time, sleep=time.healing(faulty)) as census:
        await census.get_source(5)
    assert time.sleeps == [waited]


def test_an_http_date_is_read_against_the_real_clock_by_default() -> None:
    in_seven_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=7), usegmt=True)
    assert 5 <= (RetryPolicy().parse_retry_after(in_seven_seconds) or 0) <= 7


async def test_the_default_policy_backs_off_from_half_a_second_to_eight(faulty: Sandbox) -> None:
    """Six attempts; waits from 0.5 s doubling up to 8 s, jitter taking off at most half (here a
    quarter); within 45 s."""
    time = FakeTime()
    fake_time = {"sleep": time.sleep, "clock": lambda: time.now, "jitter": lambda: 0.5}
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("503",))
    async with faulty.census(retry=replace(RetryPolicy(), **fake_time), timeout_seconds=0.5) as census:
        with pytest.raises(CensusUnavailableError, match="Gave up after 6 attempts"):
            await census.get_source(5)
    assert time.sleeps == [0.375, 0.75, 1.5, 3.0, 6.0]
    time.sleeps.clear()
    async with faulty.census(retry=replace(RetryPolicy(), max_attempts=9, **fake_time)) as census:
        with pytest.raises(CensusUnavailableError):
            await census.get_source(5)
    assert time.sleeps[4:] == [6.0] * 4  # capped at 8 s
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("429",), retry_after="45.5")
    time.sleeps.clear()
    async with faulty.census(retry=replace(RetryPolicy(), **fake_time)) as census:
        with pytest.raises(CensusUnavailableError):
            await census.get_source(5)
    assert time.sleeps == []


async def test_the_default_sleep_really_waits(faulty: Sandbox) -> None:
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("503",))
    async with faulty.census(retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.001)) as census:
        with pytest.raises(CensusUnavailableError, match="Gave up after 2 attempts"):
            await census.get_source(5)


async def test_a_deadline_ends_with_its_block(faulty: Sandbox) -> None:
    time = FakeTime()
    async with _client(faulty, time) as census:
        with deadline(5, clock=lambda: time.now):
            pass
        time.now += 10
        assert (await census.get_source(5)).id == 5


async def test_a_retry_after_beyond_the_budget_gives_up_at_once(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("429",), retry_after="120")
    async with _client(faulty, time, budget_seconds=30) as census:
        with pytest.raises(CensusUnavailableError) as failure:
            await census.get_source(5)
    assert time.sleeps == []
    assert "HTTP 429" in failure.value.message
    assert _attempts(faulty, "GET", "/sources/5") == 1


async def test_the_budget_bounds_the_time_spent_retrying(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("500",))
    async with _client(faulty, time, max_attempts=50, budget_seconds=10, max_delay_seconds=4) as census:
        with pytest.raises(CensusUnavailableError) as failure:
            await census.get_source(5)
    assert sum(time.sleeps) <= 10
    assert 3 <= len(time.sleeps) < 49
    assert f"Gave up after {len(time.sleeps) + 1} attempts" in failure.value.message


async def test_a_deadline_bounds_retries_too(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("503",))
    async with _client(faulty, time, max_attempts=50, budget_seconds=100) as census:
        with deadline(5, clock=lambda: time.now), pytest.raises(CensusUnavailableError):
            await census.get_source(5)
    assert sum(time.sleeps) <= 5


async def test_errors_that_will_not_change_are_not_retried(faulty: Sandbox) -> None:
    time = FakeTime()
    async with _client(faulty, time) as census:
        with pytest.raises(CensusNotFoundError):
            await census.get_source(99999)
    assert time.sleeps == []


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_patch_and_delete_are_retried(faulty: Sandbox, method: str) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("502",), methods=(method,))
    async with _client(faulty, time, sleep=time.healing(faulty)) as census:
        if method == "PATCH":
            await census.update_source(5, {"label": "Same body twice"})
        else:
            await census.delete_source(5)
    assert _attempts(faulty, method, "/sources/5") == 2


@pytest.mark.parametrize("kind", ["500", "502", "503", "html", "drop", "slow", "truncated", "malformed"])
async def test_a_create_that_may_have_reached_census_is_never_sent_again(faulty: Sandbox, kind: str) -> None:
    time = FakeTime()
    before = len(faulty.workspace.sources)
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,), methods=("POST",), slow_seconds=2)
    async with _client(faulty, time) as census:
        with pytest.raises(CensusUnknownOutcomeError):
            await census.create_source(
                {"type": "postgres", "credentials": POSTGRES}, group_id=faulty.group_id
            )
    assert time.sleeps == []
    # A slow answer is logged only when it finally leaves; the workspace shows the work at once.
    assert _attempts(faulty, "POST", "/sources") <= 1
    created = len(faulty.workspace.sources) - before
    assert created == (0 if kind in BEFORE_API_FAULTS else 1)


async def test_a_rate_limited_create_is_not_repeated_either(faulty: Sandbox) -> None:
    time = FakeTime()
    faulty.workspace.faults = FaultConfig(rate=1.0, kinds=("429",), methods=("POST",))
    async with _client(faulty, time) as census:
        with pytest.raises(CensusUnavailableError):
            await census.create_source(
                {"type": "postgres", "credentials": POSTGRES}, group_id=faulty.group_id
            )
    assert _attempts(faulty, "POST", "/sources") == 1


def _refusing_url() -> str:
    """The URL of a loopback port nothing listens on: every connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1"


async def test_a_post_that_never_left_is_retried() -> None:
    time = FakeTime()
    census = CensusClient(_refusing_url(), SANDBOX_TOKEN, retry=time.policy(max_attempts=3))
    async with census:
        with pytest.raises(CensusConnectionError) as failure:
            await census.create_source({"type": "postgres", "credentials": POSTGRES})
    assert len(time.sleeps) == 2
    assert "could not connect" in failure.value.message
    assert "Gave up after 3 attempts" in failure.value.message
    assert not isinstance(failure.value, CensusUnknownOutcomeError)


async def test_a_host_that_refuses_connections_is_tried_for_two_seconds_not_the_whole_budget() -> None:
    """A wrong address never heals: by default its retries stop within 2 s, not 45."""
    time = FakeTime()
    fake_time = {"sleep": time.sleep, "clock": lambda: time.now, "jitter": lambda: 0.5}
    census = CensusClient(_refusing_url(), SANDBOX_TOKEN, retry=replace(RetryPolicy(), **fake_time))
    async with census:
        with pytest.raises(CensusConnectionError, match="Gave up after 3 attempts"):
            await census.get_source(5)
    # Waits of 0.375 and 0.75 s; the next, 1.5 s, would end past the 2 s.
    assert time.sleeps == [0.375, 0.75]


async def test_content_that_cannot_be_encoded_is_refused_without_a_request(faulty: Sandbox) -> None:
    time = FakeTime()
    async with _client(faulty, time) as census:
        for credentials in ({"password": "\ud800"}, {"port": float("nan")}):
            with pytest.raises(CensusRequestError, match="cannot be encoded"):
                await census.create_source({"type": "postgres", "credentials": credentials})
    assert time.sleeps == []
    assert faulty.workspace.requests == []


@pytest.mark.parametrize("token", ["secret-token:sandbox ", "sandbox\npat", "a\x00b"])
async def test_a_request_the_http_client_refuses_to_write_is_neither_retried_nor_a_network_failure(
    faulty: Sandbox, token: str
) -> None:
    """A token with a character no header carries (settings refuse it at start-up; a client made
    directly can still hold one) fails at once, for what it is, on reads and writes alike."""
    time = FakeTime()
    async with faulty.census(token, retry=time.policy()) as census:
        for attempt in (census.get_source(5), census.refresh_tables(5)):
            with pytest.raises(CensusUnsendableError) as failure:
                await attempt
            assert "was not sent" in failure.value.message
            assert "CENSUS_API_TOKEN" in failure.value.message
            assert "Gave up" not in failure.value.message
            assert not isinstance(failure.value, CensusConnectionError | CensusUnknownOutcomeError)
    assert time.sleeps == []
    assert faulty.workspace.requests == []
    assert token not in repr(failure.value)
