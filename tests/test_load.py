"""A small run of bench/load.py as a test: census-mcp in two uvicorn workers, many clients, no failure.

Why: the HTTP deployment promises that any worker answers any request and that concurrent calls do
not interfere (one shared Census client and list cache per worker). This drives the same machinery
as the load benchmark (sandbox in its own process, `uvicorn census_mcp.asgi:create_app --factory
--workers 2`, raw stateless tools/call POSTs) at small scale.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx2
import pytest

from census_mcp.sandbox import SandboxConfig

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))  # bench/ is scripts, not a package; bench/run.py imports the same way

import load  # noqa: E402
from loopback import serve_sandbox  # noqa: E402

CLIENTS = 20
CALLS = 1000
# The replies carry no pid, so a worker's CPU time is the evidence that it served calls: an idle
# uvicorn worker uses next to none (0-1 clock tick over the run), while a call costs about 0.5 ms, so
# even a worker that accepted only a few of the 20 connections passes this. 300 calls, most of them
# in the warm-up, once left a worker at 0.04 s on a loaded CI machine: too thin a margin.
MIN_WORKER_CPU_SECONDS = 0.03


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker CPU time from Linux /proc")
def test_two_workers_answer_mixed_concurrent_calls_without_a_failure() -> None:
    with (
        serve_sandbox(SandboxConfig(size=load.SIZE)) as sandbox,
        load.serve("A", load.app_env(sandbox.base_url), workers=2) as served,
    ):
        plan = load.Plan(
            url=served.mcp_url,
            kind="A",
            catalog=load.Catalog.of(sandbox.sources),
            clients=CLIENTS,
            start_at=time.time() + load.SPAWN_SECONDS,
            seconds=20,  # an upper bound; the run ends after CALLS calls, in a few seconds
            warmup_seconds=0.5,  # clients arrive over its first half, so both workers accept some
            max_calls=CALLS,
        )
        workers = {f"worker {pid}": pid for pid in served.workers}
        tally, cpu = load.run_generators([plan], workers)
        missed = asyncio.run(calls_that_must_fail(served.mcp_url))

    assert str(missed[0]).startswith("isError get_source:"), missed
    assert missed[1] == "HTTP 404", missed
    assert tally.failures == {}
    calls = {tool: len(samples) for tool, samples in tally.latencies_ms.items()}
    assert sum(calls.values()) + tally.warmup_calls == CALLS
    assert set(calls) == {tool for _, tool, _ in load.CENSUS_MIX}, calls
    assert len(served.workers) == 2
    used = {name: cpu.seconds(name) for name in workers}
    assert all((seconds or 0.0) >= MIN_WORKER_CPU_SECONDS for seconds in used.values()), used


async def calls_that_must_fail(url: str) -> list[str | None]:
    """A missing source and a wrong path, through the load generator's own call: zero failures under
    load only means something if its failure check sees these."""
    missing = load.Call("get_source", {"source_id": load.SIZE + 1})
    async with httpx2.AsyncClient() as http:
        return [
            await load.call_tool(http, url, missing, 1),
            await load.call_tool(http, url.removesuffix("/mcp") + "/nowhere", missing, 2),
        ]
