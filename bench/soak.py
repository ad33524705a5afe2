"""Soak benchmark: census-mcp served over HTTP for a long run, many users, its memory sampled.

Why: a team server runs for weeks without a restart, and in passthrough mode meets thousands of
users, each with their own token, listing, paging and searching with ever-new strings. Whatever it
keeps per key must be bounded by number, not only by time. This shows that its memory stays flat.

Everything stays on 127.0.0.1. The sandbox (`python -m census_mcp.sandbox --any-token`, which accepts
every token) runs in its own process (bench/loopback.py); census-mcp runs as one uvicorn process
(`census_mcp.asgi:create_app --factory`) with `CENSUS_MCP_AUTH=passthrough` and no token of its own;
the clients are asyncio in this process, each call one stateless tools/call POST as bench/load.py
sends it. Each client runs user sessions one after another, every session with a token never used
before: list_sources, a second page of it (from the cache), list_source_tables with a search never
made before, get_source; every `--write-every` sessions it also creates a source and deletes it, and
every `--write-every` sessions starts a table refresh and reads its status.

Every `--sample-seconds` it reads the server's resident memory (VmRSS in /proc/PID/status) and
counts the sockets the server holds open to Census (established TCP connections to the sandbox's
port among the server's file descriptors). It reports RSS after the warm-up and at the end, the
least-squares slope of RSS against calls after the warm-up, in MB per 10,000 calls, with its
standard error, calls, failures and the most sockets seen, against the pool (`--pool`, passed as
CENSUS_MCP_CENSUS_CONNECTIONS).

Run it (ten minutes by default, from the repository root):

    .venv/bin/python bench/soak.py [--seconds 600] [--clients 16] [--pool 16] [--json PATH]

The exit status is 1 when a call failed, the sockets exceeded the pool, or RSS grew by 5% or more
after the warm-up; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from load import Call, Json, app_env, send, serve
from loopback import serve_sandbox

from census_mcp.sandbox import GROUPS, SandboxConfig

MAX_GROWTH = 0.05  # the target: RSS after the warm-up grows by less than this over the run
_PROC = Path("/proc")
_ESTABLISHED = "01"
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "soak", "password": "soak", "database": "soak"}


@dataclass(frozen=True)
class Options:
    """The run: its length and warm-up, clients, the server's pool to Census, the workspace."""

    seconds: float = 600.0
    warmup_seconds: float = 60.0
    clients: int = 16
    pool: int = 16
    size: int = 500
    api_version: str = "v2"
    write_every: int = 100
    sample_seconds: float = 2.0


@dataclass(frozen=True)
class Sample:
    """The server at one instant: seconds since the start, calls answered so far, RSS, sockets."""

    elapsed: float
    calls: int
    rss_mb: float
    sockets: int


@dataclass
class Report:
    options: Options
    samples: list[Sample] = field(default_factory=list)
    calls: int = 0
    by_tool: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def measured(self) -> list[Sample]:
        """The samples from the end of the warm-up on."""
        return [sample for sample in self.samples if sample.elapsed >= self.options.warmup_seconds]

    @property
    def warm_rss_mb(self) -> float:
        return self.measured[0].rss_mb

    @property
    def end_rss_mb(self) -> float:
        return self.samples[-1].rss_mb

    @property
    def growth(self) -> float:
        """RSS at the end over RSS after the warm-up, less one."""
        return self.end_rss_mb / self.warm_rss_mb - 1

    @property
    def slope(self) -> tuple[float, float]:
        """Least-squares MB per 10,000 calls after the warm-up, and its standard error."""
        xs = [sample.calls / 10_000 for sample in self.measured]
        ys = [sample.rss_mb for sample in self.measured]
        if len(xs) < 3 or len(set(xs)) < 2:
            return math.nan, math.nan
        slope, intercept = statistics.linear_regression(xs, ys)
        residuals = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
        spread = sum((x - statistics.fmean(xs)) ** 2 for x in xs)
        return slope, math.sqrt(residuals / (len(xs) - 2) / spread)

    @property
    def peak_sockets(self) -> int:
        return max(sample.sockets for sample in self.samples)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def passed(self) -> bool:
        return not self.failed and self.peak_sockets <= self.options.pool and self.growth < MAX_GROWTH


def rss_mb(pid: int) -> float:
    """The resident memory of a process, from /proc/PID/status."""
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def sockets_to(pid: int, port: int) -> int:
    """Established TCP connections from process `pid` to `port`: its sockets (file descriptors)
    that /proc/PID/net/tcp lists as connected to that remote port. Counted by inode, because the
    kernel writes that table a page at a time and, while sockets come and go, may list one twice."""
    inodes = set()
    for fd in (_PROC / str(pid) / "fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    connected = set()
    for table in ("tcp", "tcp6"):
        for line in (_PROC / str(pid) / "net" / table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rpartition(":")[2], 16)
            if remote_port == port and fields[3] == _ESTABLISHED and fields[9] in inodes:
                connected.add(fields[9])
    return len(connected)


class Users:
    """The traffic: sessions of users, each with a token never used before, one after another per client."""

    def __init__(self, http: httpx2.AsyncClient, url: str, options: Options, report: Report) -> None:
        self.http, self.url, self.options, self.report = http, url, options, report
        self.sessions = itertools.count(1)
        self.request_ids = itertools.count(1)

    def token(self, number: int) -> str:
        if self.options.api_version == "v1":
            return f"secret-token:soak-user-{number}"
        return f"soak-user-{number}-personal-access-token"

    async def call(self, token: str, tool: str, arguments: Json) -> Json | None:
        """One call; its structured result, or None when it failed (counted by kind)."""
        answer = await send(self.http, self.url, Call(tool, arguments), next(self.request_ids), token)
        self.report.calls += 1
        self.report.by_tool[tool] += 1
        if isinstance(answer, str):
            self.report.failures[answer] += 1
            return None
        structured: Json | None = answer.get("structuredContent")
        return structured

    async def session(self) -> None:
        number = next(self.sessions)
        token = self.token(number)
        source_id = 1 + number % self.options.size
        await self.call(token, "list_sources", {})
        await self.call(token, "list_sources", {"offset": 25})
        await self.call(token, "list_source_tables", {"source_id": source_id, "search": f"soak {number}"})
        await self.call(token, "get_source", {"source_id": source_id})
        if number % self.options.write_every == 0:
            await self.create_and_delete(token, number)
        if number % self.options.write_every == self.options.write_every // 2:
            started = await self.call(token, "refresh_source_tables", {"source_id": source_id})
            if started is not None:
                status = {"source_id": source_id, "refresh_key": started["refresh_key"]}
                await self.call(token, "get_refresh_tables_status", status)
        self.report.sessions += 1

    async def create_and_delete(self, token: str, number: int) -> None:
        arguments: Json = {"type": "postgres", "credentials": POSTGRES, "label": f"Soak {number}"}
        if self.options.api_version == "v2":
            arguments["group_id"] = GROUPS[0]
        created = await self.call(token, "create_source", arguments)
        if created is not None:
            confirm = {"source_id": created["id"], "confirm_name": created["name"]}
            await self.call(token, "delete_source", confirm)


async def drive(url: str, server_pid: int, census_port: int, options: Options) -> Report:
    """Run the clients until the time is up, sampling the server meanwhile."""
    report = Report(options)
    started = time.monotonic()
    ends = started + options.seconds
    limits = httpx2.Limits(max_connections=options.clients, max_keepalive_connections=options.clients)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
        users = Users(http, url, options, report)

        async def client() -> None:
            while time.monotonic() < ends:
                await users.session()

        async def sample() -> None:
            while True:
                now = time.monotonic()
                report.samples.append(
                    Sample(
                        now - started, report.calls, rss_mb(server_pid), sockets_to(server_pid, census_port)
                    )
                )
                if now >= ends:
                    return
                await asyncio.sleep(min(options.sample_seconds, max(0.0, ends - now)))

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(client() for _ in range(options.clients)))
        await sampler
    return report


def run(options: Options) -> Report:
    """The sandbox and census-mcp on loopback, under the sessions of `options`."""
    with serve_sandbox(SandboxConfig(size=options.size, any_token=True)) as sandbox:
        base_url = sandbox.api_url(options.api_version)
        env = app_env(
            base_url,
            CENSUS_API_TOKEN="",
            CENSUS_MCP_AUTH_TOKEN="",
            CENSUS_MCP_AUTH="passthrough",
            CENSUS_API_VERSION=options.api_version,
            CENSUS_MCP_CENSUS_CONNECTIONS=str(options.pool),
        )
        with serve("A", env, workers=1) as served:
            census_port = httpx2.URL(base_url).port
            assert census_port is not None
            return asyncio.run(drive(served.mcp_url, served.workers[0], census_port, options))


def render(report: Report) -> str:
    slope, error = report.slope
    options = report.options
    lines = [
        f"{options.seconds:g} s, warm-up {options.warmup_seconds:g} s, {options.clients} clients, "
        f"census-mcp in one uvicorn process (passthrough, API {options.api_version}, pool {options.pool}), "
        f"sandbox of {options.size} sources; {os.cpu_count()} CPUs shared by all",
        f"calls                       {report.calls:,} ({report.calls / options.seconds:.0f}/s)",
        f"distinct tokens (sessions)  {report.sessions:,}",
        "calls by tool               "
        + ", ".join(f"{tool} {count:,}" for tool, count in report.by_tool.items()),
        f"failures                    {report.failed:,}",
        f"RSS after warm-up           {report.warm_rss_mb:.1f} MB",
        f"RSS at the end              {report.end_rss_mb:.1f} MB ({report.growth:+.1%})",
        f"RSS min / max after warm-up {min(s.rss_mb for s in report.measured):.1f} / "
        f"{max(s.rss_mb for s in report.measured):.1f} MB",
        f"slope                       {slope:+.3f} MB per 10,000 calls (standard error {error:.3f})",
        f"open sockets to Census      at most {report.peak_sockets} (pool {options.pool}), "
        f"{report.samples[-1].sockets} at the end",
    ]
    lines += [f"failed {count:,} x {kind}" for kind, count in report.failures.most_common(5)]
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(f"flat RSS (< {MAX_GROWTH:.0%}), no failure, sockets within the pool: {verdict}")
    return "\n".join(lines)


def main() -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="length of the run (600)")
    parser.add_argument(
        "--warmup", type=float, help="seconds before RSS counts as warm (default a tenth of the run, 5 to 60)"
    )
    parser.add_argument("--clients", type=int, default=defaults.clients, help="concurrent clients (16)")
    parser.add_argument("--pool", type=int, default=defaults.pool, help="census-mcp's sockets to Census (16)")
    parser.add_argument("--size", type=int, default=defaults.size, help="sources in the sandbox (500)")
    parser.add_argument("--api-version", choices=("v1", "v2"), default=defaults.api_version)
    parser.add_argument(
        "--write-every",
        type=int,
        default=defaults.write_every,
        help="sessions per create/delete and refresh (100)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every sample to PATH")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60.0, max(5.0, args.seconds / 10))
    if min(args.clients, args.pool, args.size, args.write_every) < 1 or not 0 <= warmup < args.seconds:
        parser.error(
            "--clients, --pool, --size and --write-every must be at least 1, --warmup within --seconds"
        )
    options = Options(
        args.seconds, warmup, args.clients, args.pool, args.size, args.api_version, args.write_every
    )
    report = run(options)
    print(render(report))
    if args.json:
        # asdict would rebuild the Counters from their items, counting pairs: give them as dicts.
        counters = {"by_tool": dict(report.by_tool), "failures": dict(report.failures)}
        document: dict[str, Any] = {**asdict(report), **counters}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
