"""The sandbox's fault mode, over a real loopback server: what each fault looks like on the wire, whether
the workspace changed behind it, and that the faults are drawn as configured and replayable."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest

from census_mcp.sandbox import FaultConfig, RequestRecord
from tests.conftest import Sandbox, running_sandbox
from tests.sandbox.test_sandbox import AUTH, REDSHIFT

CREATE = {"connection": REDSHIFT}


@pytest.fixture(scope="module")
def served() -> Iterator[Sandbox]:
    """One loopback server for the module: starting one per test would cost most of the run time.
    Faults are the same for both API versions: these tests use v1's paths."""
    with running_sandbox() as running:
        yield running


@pytest.fixture
def sandbox(served: Sandbox) -> Sandbox:
    """The shared server with faults off and an empty request log; tests compare source counts, not ids."""
    served.workspace.faults = FaultConfig()
    served.workspace.requests.clear()
    return served


def _client(sandbox: Sandbox, timeout: float = 5.0, headers: dict[str, str] = AUTH) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=sandbox.base_url, headers=headers, timeout=timeout)


def _only(kind: str, **options: Any) -> FaultConfig:
    return FaultConfig(rate=1.0, kinds=(kind,), **options)


async def _logged(sandbox: Sandbox, count: int = 1) -> list[RequestRecord]:
    """The request log once it holds `count` entries (a timed-out request is logged after the client left)."""
    with anyio.fail_after(2):
        while len(sandbox.workspace.requests) < count:  # noqa: ASYNC110 - filled by the server thread
            await anyio.sleep(0.01)
    return sandbox.workspace.requests


def test_config_rejects_unknown_kinds_and_rates() -> None:
    with pytest.raises(ValueError, match="fault kinds"):
        FaultConfig(kinds=("404",))
    with pytest.raises(ValueError, match="fault kinds"):
        FaultConfig(kinds=())
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
    assert FaultConfig(methods=("post",)).methods == ("POST",)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("429", 429, "application/json", '{"status":429,"message":"Too many requests"}'),
        ("500", 500, "application/json", '{"status":"error","message":"Internal server error"}'),
        ("502", 502, "text/html", "<title>502 Bad Gateway</title>"),
        ("503", 503, "application/json", '{"status":503}'),
        ("html", 504, "text/html", "<title>504 Gateway Time-out</title>"),
    ],
)
async def test_faults_before_the_api_leave_the_workspace_alone(
    sandbox: Sandbox, kind: str, status: int, content_type: str, body: str
) -> None:
    sources = dict(sandbox.workspace.sources)
    sandbox.workspace.faults = _only(kind)
    async with _client(sandbox) as client:
        response = await client.post("/sources", json=CREATE)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    assert body in response.text
    assert sandbox.workspace.sources == sources
    [record] = sandbox.workspace.requests
    assert (record.fault, record.reached_api) == (kind, False)


@pytest.mark.anyio
@pytest.mark.parametrize("retry_after", ["0", "2", "Wed, 21 Oct 2015 07:28:00 GMT", ""])
async def test_429_sends_the_configured_retry_after(sandbox: Sandbox, retry_after: str) -> None:
    sandbox.workspace.faults = _only("429", retry_after=retry_after)
    async with _client(sandbox) as client:
        response = await client.get("/sources")
    assert response.status_code == 429
    assert response.headers.get("retry-after") == (retry_after or None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("slow", httpx2.ReadTimeout),
        ("drop", httpx2.RemoteProtocolError),
        ("truncated", None),
        ("malformed", None),
    ],
)
async def test_faults_after_the_api_still_create_the_source(
    sandbox: Sandbox, kind: str, error: type[Exception] | None
) -> None:
    before = len(sandbox.workspace.sources)
    sandbox.workspace.faults = _only(kind, slow_seconds=1.0)
    async with _client(sandbox, timeout=0.2) as client:
        if error is None:
            response = await client.post("/sources", json=CREATE)
            assert response.status_code == 201
            assert int(response.headers["content-length"]) == len(response.content)
            with pytest.raises(json.JSONDecodeError):
                response.json()
        else:
            with pytest.raises(error):
                await client.post("/sources", json=CREATE)
    [record] = await _logged(sandbox)
    assert (record.fault, record.reached_api) == (kind, True)
    assert len(sandbox.workspace.sources) == before + 1
    assert record.finished - record.started < 0.9, "a slow answer stops waiting once the client hangs up"


@pytest.mark.anyio
async def test_slow_answer_reaches_a_patient_client_late(sandbox: Sandbox) -> None:
    sandbox.workspace.faults = _only("slow", slow_seconds=0.3)
    async with _client(sandbox) as client:
        started = time.perf_counter()
        response = await client.get("/sources/1")
    assert time.perf_counter() - started >= 0.3
    assert response.json()["data"]["id"] == 1


@pytest.mark.anyio
async def test_truncated_and_malformed_bodies(sandbox: Sandbox) -> None:
    async with _client(sandbox) as client:
        whole = (await client.get("/sources/1")).content
        sandbox.workspace.faults = _only("truncated")
        truncated = await client.get("/sources/1")
        sandbox.workspace.faults = _only("malformed")
        malformed = await client.get("/sources/1")
    assert (truncated.status_code, truncated.content) == (200, whole[: len(whole) // 2])
    assert malformed.status_code == 200
    assert malformed.content.startswith(b'{"status": "success", "data": ')
    with pytest.raises(json.JSONDecodeError):
        malformed.json()


@pytest.mark.anyio
async def test_before_faults_come_before_auth_and_after_faults_need_the_api(sandbox: Sandbox) -> None:
    wrong = {"Authorization": "Bearer secret-token:wrong"}
    async with _client(sandbox, headers=wrong) as client:
        sandbox.workspace.faults = _only("503")
        unavailable = await client.get("/sources")
        sandbox.workspace.faults = _only("malformed")
        denied = await client.get("/sources")
    assert (unavailable.status_code, denied.status_code) == (503, 401)
    assert denied.json() == {"status": 401}
    assert [(r.fault, r.reached_api) for r in sandbox.workspace.requests] == [("503", False), (None, False)]


@pytest.mark.anyio
async def test_rate_zero_never_faults_and_rate_one_always_does(sandbox: Sandbox) -> None:
    async with _client(sandbox) as client:
        sandbox.workspace.faults = FaultConfig(rate=0.0, kinds=("500",))
        calm = [(await client.get("/sources/1")).status_code for _ in range(10)]
        sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("500", "503"))
        stormy = [(await client.get("/sources/1")).status_code for _ in range(10)]
    assert calm == [200] * 10
    assert set(stormy) == {500, 503}
    assert [record.reached_api for record in sandbox.workspace.requests] == [True] * 10 + [False] * 10


@pytest.mark.anyio
async def test_only_the_configured_methods_get_faults(sandbox: Sandbox) -> None:
    sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("500",), methods=("post",))
    async with _client(sandbox) as client:
        read = await client.get("/sources/1")
        created = await client.post("/sources", json=CREATE)
        updated = await client.patch("/sources/1", json={"connection": {"label": "Renamed"}})
    assert [read.status_code, created.status_code, updated.status_code] == [200, 500, 200]


@pytest.mark.anyio
async def test_the_same_seed_replays_the_same_faults(sandbox: Sandbox) -> None:
    async def statuses(seed: int) -> list[int]:
        sandbox.workspace.faults = FaultConfig(rate=0.5, kinds=("429", "500", "503"), seed=seed)
        async with _client(sandbox) as client:
            return [(await client.get("/source_types")).status_code for _ in range(20)]

    first = await statuses(seed=1)
    assert await statuses(seed=1) == first
    assert await statuses(seed=2) != first
    assert 200 in first
    assert set(first) - {200}, "some requests are faulted"


@pytest.mark.anyio
async def test_the_request_log_is_never_faulted(api_version: str) -> None:
    with running_sandbox(api_version, faults=_only("500")) as sandbox:
        async with _client(sandbox) as client:
            faulted = await client.get("/source_types")
            log = await client.get(sandbox.root + "/_sandbox/requests")
    assert (faulted.status_code, log.status_code) == (500, 200)
    assert log.json() == [
        {
            "method": "GET",
            "path": f"{sandbox.prefix}/source_types",
            "query": "",
            "fault": "500",
            "reached_api": False,
        }
        | {key: log.json()[0][key] for key in ("started", "finished")}
    ]
    assert (sandbox.workspace.requests[-1].fault, sandbox.workspace.requests[-1].reached_api) == (None, True)
