"""Benchmark census-mcp (A) against an MCP server generated from the OpenAPI spec (B) and a no-op server (C).

Why: an API wrapper is only worth having if it answers in fewer calls, fewer bytes and less time than
the server anyone can generate from the REST API, at little cost over the SDK's own floor.
All three servers run as stdio subprocesses driven by the SDK's `mcp.Client`; Census is the project's
sandbox served on 127.0.0.1. Targets that are missed are printed as MISS, never hidden.

Run it (about a minute, one command, from the repository root):

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python bench/run.py [--json PATH] [--profile] [--quick]

--json PATH writes the raw figures (every sample). --profile also runs A's cold start under
`python -X importtime` and its list call under cProfile, and prints the top entries.
The exit status is 1 only when a correctness check fails (the harness would be measuring nonsense);
a missed target is a result, not a failure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import anyio
from loopback import LoopbackSandbox, serve_sandbox
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from census_mcp.sandbox import SANDBOX_TOKENS, SandboxConfig

Kind = Literal["A", "B", "C"]
Json = dict[str, Any]
T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
SIZE = 1000
LATENCY_SECONDS = 0.05
PHYSICAL_LIMIT_SECONDS = 2 * LATENCY_SECONDS  # the first page (to learn the total), then the rest at once
DEFAULT_PER_PAGE = 25  # the API's, when per_page is not given
MAX_CALLS_PER_WALK = 200  # bounds every paging loop; 1000 sources need at most 40 pages
FAILED_SNOWFLAKE: Json = {"type": "snowflake", "test_status": "failed", "limit": 100, "refresh": True}
LIST_ALL: Json = {"limit": 100, "refresh": True}


@dataclass(frozen=True)
class Repeats:
    """How many samples each figure takes; --quick lowers them to check the harness fast."""

    list_call: int = 5
    walk: int = 3
    fresh_walk: int = 3
    warmup: int = 5
    round_trip: int = 50
    cold_start: int = 7


class BenchError(RuntimeError):
    """A tool failed or a check did not hold: the figures would not mean what they say."""


# ---------------------------------------------------------------- the three helpers every figure uses


def server_params(
    kind: Kind, base_url: str, python_flags: Sequence[str] = (), api_version: str = "v1"
) -> StdioServerParameters:
    """How to launch A, B or C with this interpreter; all three get the same env (sandbox URL, token).
    Only A speaks API v2 (figure 6); B and C stay on v1."""
    scripts: dict[Kind, Path] = {
        "A": Path(sys.executable).parent / "census-mcp",
        "B": BENCH_DIR / "baseline_openapi.py",
        "C": BENCH_DIR / "baseline_noop.py",
    }
    env = {
        "CENSUS_API_TOKEN": SANDBOX_TOKENS[api_version],
        "CENSUS_API_VERSION": api_version,
        "CENSUS_API_BASE_URL": base_url,
        "FASTMCP_LOG_LEVEL": "WARNING",
    }
    # The SDK passes children a minimal env; a PYTHONPATH keeps them on the same code as the harness.
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return StdioServerParameters(command=sys.executable, args=[*python_flags, str(scripts[kind])], env=env)


@asynccontextmanager
async def connected(
    kind: Kind,
    base_url: str,
    *,
    python_flags: Sequence[str] = (),
    errlog: TextIO = sys.stderr,
    api_version: str = "v1",
) -> AsyncIterator[Client]:
    """Spawn one server over stdio and connect; no client cache, so every request reaches the server."""
    transport = stdio_client(server_params(kind, base_url, python_flags, api_version), errlog=errlog)
    async with Client(transport, cache=None) as client:
        yield client


async def timed(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """Await `call()` and return its result and its wall time in seconds."""
    started = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - started


def compact_size(value: Any) -> int:
    """Bytes of a value as compact JSON, the way it travels on the wire."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def result_size(result: CallToolResult) -> int:
    """What a tool result costs a model's context: its text blocks plus its structuredContent."""
    text = sum(len(block.text.encode()) for block in result.content if isinstance(block, TextContent))
    return text + (compact_size(result.structured_content) if result.structured_content is not None else 0)


# ---------------------------------------------------------------- calls and walks


async def call(client: Client, tool: str, arguments: Json) -> tuple[CallToolResult, Json]:
    """Call a tool that must succeed and return a structured result."""
    result = await client.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
        raise BenchError(f"{tool} {json.dumps(arguments)} failed: {text[:500]}")
    return result, result.structured_content


@dataclass
class Walk:
    """Every page of one listing: how many calls, how many result bytes, and the rows seen."""

    calls: int = 0
    size: int = 0
    rows: list[Json] = field(default_factory=list)
    first: Json = field(default_factory=dict)


async def walk(
    client: Client, arguments: Json, rows_key: str, next_arguments: Callable[[Json], Json | None]
) -> Walk:
    """Call list_sources, then follow `next_arguments` until it gives None, as a model paging would."""
    seen = Walk()
    current: Json | None = arguments
    while current is not None:
        if seen.calls == MAX_CALLS_PER_WALK:
            raise BenchError(
                f"list_sources {json.dumps(arguments)} did not end in {MAX_CALLS_PER_WALK} calls"
            )
        result, structured = await call(client, "list_sources", current)
        seen.calls += 1
        seen.size += result_size(result)
        seen.rows += structured[rows_key]
        seen.first = seen.first or structured
        current = next_arguments(structured)
    return seen


async def walk_a(client: Client, arguments: Json) -> Walk:
    """A's paging: offset and next_offset over the matches."""
    return await walk(
        client,
        arguments,
        "sources",
        lambda page: None if page["next_offset"] is None else arguments | {"offset": page["next_offset"]},
    )


async def walk_b(client: Client, per_page: int | None) -> Walk:
    """B's paging: the API's page and pagination.next_page; per_page None keeps the API's default (25)."""
    arguments: Json = {} if per_page is None else {"per_page": per_page}
    return await walk(
        client,
        arguments | {"page": 1},
        "data",
        lambda page: (
            None
            if page["pagination"]["next_page"] is None
            else arguments | {"page": page["pagination"]["next_page"]}
        ),
    )


def census_traffic(sandbox: LoopbackSandbox, since: int) -> Json:
    """What Census served since request number `since`, to explain the time a call took.

    requests; waves, the sequential round trips they came in; span_s, from the first request's start
    to the last one's finish; served_ms, the median time the sandbox itself spent on one request.
    """
    records = sorted(sandbox.requests()[since:], key=lambda record: record.started)
    if not records:
        return {"requests": 0, "waves": 0, "span_s": 0.0, "served_ms": 0.0}
    # Per request, the longest chain of requests ending there, each started after the one before ended.
    depth: list[int] = []
    for record in records:
        earlier = (
            d for d, r in zip(depth, records[: len(depth)], strict=True) if r.finished <= record.started
        )
        depth.append(1 + max(earlier, default=0))
    waves = max(depth)
    span = max(record.finished for record in records) - records[0].started
    served = statistics.median(record.finished - record.started for record in records)
    return {
        "requests": len(records),
        "waves": waves,
        "span_s": round(span, 4),
        "served_ms": round(served * 1000, 2),
    }


def check(condition: bool, message: str, checks: list[str]) -> None:
    """Record a correctness check; a failed one is printed and makes the exit status 1."""
    checks.append(("ok      " if condition else "FAILED  ") + message)


# ---------------------------------------------------------------- the figures


async def tools_list_size(client: Client) -> tuple[int, int]:
    """Figure 1: how many tools are listed, and their size on the wire in compact JSON bytes."""
    tools = (await client.list_tools()).tools
    listed = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    return len(tools), compact_size(listed)


def is_failed_snowflake(source: Json) -> bool:
    """The question of figure 2, asked of a raw Census source (as in B's pages and the workspace)."""
    return source["type"] == "snowflake" and source["last_test_succeeded"] is False


async def a_list_figures(sandbox: LoopbackSandbox, repeats: Repeats, checks: list[str]) -> Json:
    """Figures 2 and 3 for A: the filtered question in one call, then listing everything with refresh."""
    true_failed = sum(map(is_failed_snowflake, sandbox.sources))
    async with connected("A", sandbox.base_url) as a:
        answer = await walk_a(a, FAILED_SNOWFLAKE)
        total = answer.first["total"]
        check(total == true_failed, f"A's total of failed snowflake sources {total} == {true_failed}", checks)
        seconds, census, listed = [], [], set()
        for _ in range(repeats.list_call):
            since = len(sandbox.requests())
            (_, page), elapsed = await timed(partial(call, a, "list_sources", LIST_ALL))
            seconds.append(elapsed)
            census.append(census_traffic(sandbox, since))
            listed.add(page["workspace_total"])
        check(listed == {SIZE}, f"A's list_sources calls report workspace totals {sorted(listed)}", checks)
    return {
        "true_failed_snowflake": true_failed,
        "a_failed": {"calls": answer.calls, "bytes": answer.size, "total": total},
        "a_list_all_seconds": seconds,
        "a_list_all_census": census,
    }


async def a_offset_walks(sandbox: LoopbackSandbox, repeats: Repeats, checks: list[str]) -> Json:
    """Figure 3 for A paging by offset, no refresh; a new process each time, so its cache starts empty."""
    walks = []
    for _ in range(repeats.fresh_walk):
        async with connected("A", sandbox.base_url) as a:
            since = len(sandbox.requests())
            offsets, elapsed = await timed(partial(walk_a, a, {"limit": 100}))
            traffic = census_traffic(sandbox, since)
        distinct = len({row["id"] for row in offsets.rows})
        check(distinct == SIZE, f"A's offset walk shows {distinct} distinct sources", checks)
        walks.append({"calls": offsets.calls, "seconds": elapsed, "census": traffic})
    return {"a_offset_walks": walks}


async def b_walk_figures(sandbox: LoopbackSandbox, repeats: Repeats, checks: list[str]) -> Json:
    """Figures 2 and 3 for B: every page at the API's default size and at 100, as a model would walk them."""
    true_failed = sum(map(is_failed_snowflake, sandbox.sources))
    figures: Json = {}
    async with connected("B", sandbox.base_url) as b:
        for per_page in (None, 100):
            runs = [await timed(partial(walk_b, b, per_page)) for _ in range(repeats.walk)]
            pages, label = runs[0][0], per_page or DEFAULT_PER_PAGE
            distinct = len({row["id"] for row in pages.rows})
            failed = sum(map(is_failed_snowflake, pages.rows))
            check(
                len(pages.rows) == distinct == SIZE,
                f"B's pages at {label}/page hold {distinct} sources",
                checks,
            )
            check(failed == true_failed, f"B's pages at {label}/page give {failed} failed snowflake", checks)
            figures[f"b_walk_{label}"] = {
                "calls": pages.calls,
                "bytes": pages.size,
                "seconds": [t for _, t in runs],
            }
    return figures


async def round_trip_ms(client: Client, tool: str, arguments: Json, repeats: Repeats) -> list[float]:
    """Figure 4: one tool's round trips in ms, after a warm-up."""
    for _ in range(repeats.warmup):
        await call(client, tool, arguments)
    samples = []
    for _ in range(repeats.round_trip):
        _, seconds = await timed(partial(call, client, tool, arguments))
        samples.append(seconds * 1000)
    return samples


async def cold_start_seconds(kind: Kind, base_url: str) -> float:
    """Figure 5: from spawning a new process to the tools/list answer (shutting it down is not counted)."""
    async with AsyncExitStack() as stack:

        async def spawn_and_list() -> object:
            client = await stack.enter_async_context(connected(kind, base_url))
            return await client.list_tools()

        _, seconds = await timed(spawn_and_list)
    return seconds


VERSIONS = ("v1", "v2")


async def a_version_figures(sandbox: LoopbackSandbox, repeats: Repeats, checks: list[str]) -> Json:
    """Figure 6: A on API v2 beside A on v1, one server each, calls interleaved so that drift in the
    machine's load hits both alike: the failed-snowflake answer, listing everything, one get_source."""
    figures: Json = {version: {"list_all_seconds": [], "get_source_ms": []} for version in VERSIONS}
    async with AsyncExitStack() as stack:
        clients = {
            version: await stack.enter_async_context(
                connected("A", sandbox.api_url(version), api_version=version)
            )
            for version in VERSIONS
        }
        for version, client in clients.items():
            result, page = await call(client, "list_sources", FAILED_SNOWFLAKE)
            figures[version]["failed_bytes"] = result_size(result)
            figures[version]["failed_total"] = page["total"]
            for _ in range(repeats.warmup):
                await call(client, "get_source", {"source_id": 5})
        for _ in range(repeats.list_call):
            for version, client in clients.items():
                _, elapsed = await timed(partial(call, client, "list_sources", LIST_ALL))
                figures[version]["list_all_seconds"].append(elapsed)
        for _ in range(repeats.round_trip):
            for version, client in clients.items():
                _, elapsed = await timed(partial(call, client, "get_source", {"source_id": 5}))
                figures[version]["get_source_ms"].append(elapsed * 1000)
    totals = {version: figures[version]["failed_total"] for version in VERSIONS}
    check(len(set(totals.values())) == 1, f"A's failed snowflake totals agree on v1 and v2: {totals}", checks)
    return {"a_by_version": figures}


async def loopback_figures(sandbox: LoopbackSandbox, repeats: Repeats) -> Json:
    """Figures 1, 4 and 5, on the sandbox that answers at once."""
    calls: dict[Kind, tuple[str, Json]] = {
        "A": ("get_source", {"source_id": 5}),
        "B": ("get_source", {"id": 5}),
        "C": ("noop", {}),
    }
    names = (
        "protocol",
        "tools",
        "tools_list_bytes",
        "round_trip_ms",
        "round_trip_census",
        "cold_start_seconds",
    )
    figures: Json = {name: {} for name in names}
    for kind, (tool, arguments) in calls.items():
        async with connected(kind, sandbox.base_url) as client:
            figures["protocol"][kind] = client.session.protocol_version
            figures["tools"][kind], figures["tools_list_bytes"][kind] = await tools_list_size(client)
            since = len(sandbox.requests())
            figures["round_trip_ms"][kind] = await round_trip_ms(client, tool, arguments, repeats)
            figures["round_trip_census"][kind] = census_traffic(sandbox, since)
        figures["cold_start_seconds"][kind] = []
    for _ in range(repeats.cold_start):  # interleaved, so drift in machine load hits A, B and C alike
        for kind in calls:
            figures["cold_start_seconds"][kind].append(await cold_start_seconds(kind, sandbox.base_url))
    return figures


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One line of the table; passed is None for a row that only informs."""

    figure: str
    a: str
    b: str = "-"
    c: str = "-"
    target: str = ""
    ratio: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "MISS", None: ""}[self.passed]


def abc(values: Mapping[str, float], spec: str) -> tuple[str, str, str]:
    """A, B and C's values formatted for the table; "-" where a server has no such figure."""
    a, b, c = (format(values[kind], spec) if kind in values else "-" for kind in ("A", "B", "C"))
    return a, b, c


def build_rows(fig: Json) -> list[Row]:
    """Turn the raw figures into table rows, each target judged on medians."""
    med = statistics.median
    size, failed = fig["tools_list_bytes"], fig["a_failed"]
    a_list = med(fig["a_list_all_seconds"])
    a_walk = med(walk["seconds"] for walk in fig["a_offset_walks"])
    trip = {kind: med(samples) for kind, samples in fig["round_trip_ms"].items()}
    cold = {kind: med(samples) for kind, samples in fig["cold_start_seconds"].items()}
    limit = 1.5 * PHYSICAL_LIMIT_SECONDS
    rows = [
        Row(
            "1 tools/list size, bytes",
            *abc(size, ","),
            target="A <= 1.0x B",
            ratio=f"A/B {size['A'] / size['B']:.2f}",
            passed=size["A"] <= size["B"],
        )
    ]
    for per_page in (25, 100):
        b = fig[f"b_walk_{per_page}"]
        rows += [
            Row(
                f"2 failed snowflake: calls (B {per_page}/page)",
                *abc({"A": failed["calls"], "B": b["calls"]}, "d"),
                target="A = 1 call",
                ratio=f"B/A {b['calls'] / failed['calls']:.0f}x",
                passed=failed["calls"] == 1,
            ),
            Row(
                f"2 failed snowflake: bytes (B {per_page}/page)",
                *abc({"A": failed["bytes"], "B": b["bytes"]}, ","),
                target="A <= 1/40 B",
                ratio=f"A/B 1/{b['bytes'] / failed['bytes']:.0f}",
                passed=failed["bytes"] * 40 <= b["bytes"],
            ),
        ]
    b_walk = {per_page: med(fig[f"b_walk_{per_page}"]["seconds"]) for per_page in (25, 100)}
    rows += [
        Row(
            "3 list all @50ms, s (B 25/page)",
            *abc({"A": a_list, "B": b_walk[25]}, ".3f"),
            target=f"A <= {limit:.2f} (1.5x 0.1)",
            ratio=f"A/0.1s {a_list / PHYSICAL_LIMIT_SECONDS:.2f}",
            passed=a_list <= limit,
        ),
        Row(
            "3 list all @50ms, s (B 100/page)",
            *abc({"A": a_list, "B": b_walk[100]}, ".3f"),
            ratio=f"B/A {b_walk[100] / a_list:.1f}x",
        ),
    ]
    return [
        *rows,
        Row(
            "3 A walks offsets 0..900 (10 calls), s",
            *abc({"A": a_walk}, ".3f"),
            target="<= 2x A one call",
            ratio=f"walk/one {a_walk / a_list:.2f}",
            passed=a_walk <= 2 * a_list,
        ),
        Row(
            "4 get_source round trip @0ms, ms (C noop)",
            *abc(trip, ".2f"),
            target="A <= C + 2 ms",
            ratio=f"A-C {trip['A'] - trip['C']:+.2f} ms",
            passed=trip["A"] - trip["C"] <= 2.0,
        ),
        Row(
            "5 cold start to tools/list, s",
            *abc(cold, ".3f"),
            target="A <= 1.3x C",
            ratio=f"A/C {cold['A'] / cold['C']:.2f}",
            passed=cold["A"] <= 1.3 * cold["C"],
        ),
        *version_rows(fig["a_by_version"]),
    ]


def version_rows(by_version: Json) -> list[Row]:
    """Figure 6: A on v2, with v1 measured alongside as the baseline; v2 must be no slower."""
    med = statistics.median
    v1, v2 = by_version["v1"], by_version["v2"]
    rows = [
        Row(
            "6 A on API v2: failed snowflake bytes",
            f"{v2['failed_bytes']:,}",
            ratio=f"v2/v1 {v2['failed_bytes'] / v1['failed_bytes']:.2f}",
        )
    ]
    for key, label, spec in (
        ("list_all_seconds", "list all @0ms, s", ".3f"),
        ("get_source_ms", "get_source @0ms, ms", ".2f"),
    ):
        ratio = med(v2[key]) / med(v1[key])
        rows.append(
            Row(
                f"6 A on API v2: {label}",
                format(med(v2[key]), spec),
                target=f"<= 1.1x v1 ({format(med(v1[key]), spec)})",
                ratio=f"v2/v1 {ratio:.2f}",
                passed=ratio <= 1.1,
            )
        )
    return rows


def render(rows: Sequence[Row]) -> str:
    """A plain-text table: the figure left-aligned, the numbers right-aligned."""
    header = ("figure", "A", "B", "C", "target", "ratio", "result")
    cells = [header, *((r.figure, r.a, r.b, r.c, r.target, r.ratio, r.verdict) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [
        " | ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width) if i < 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in cells
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def notes(fig: Json) -> list[str]:
    """The context a reader needs to trust or question the table, and to explain a miss."""
    walks, lists, trips = fig["a_offset_walks"], fig["a_list_all_census"], fig["round_trip_census"]
    return [
        f"A: census-mcp, B: FastMCP.from_openapi (fastmcp {version('fastmcp')}), C: MCPServer noop; "
        f"mcp {version('mcp')}, Python {platform.python_version()}, protocol {fig['protocol']['A']}",
        f"tools listed: {fig['tools']}; sandbox: {SIZE} sources, "
        f"{fig['true_failed_snowflake']} snowflake sources failed their last test",
        f"3: A's one call, per sample: Census requests {[t['requests'] for t in lists]}, sequential waves "
        f"{[t['waves'] for t in lists]}, Census span s {[t['span_s'] for t in lists]}, "
        f"sandbox time per request ms {[t['served_ms'] for t in lists]}",
        f"3: A's offset walk (new process each): Census requests {[w['census']['requests'] for w in walks]}, "
        f"waves {[w['census']['waves'] for w in walks]}",
        f"4: median time the sandbox spent per get_source request, ms: A {trips['A']['served_ms']}, "
        f"B {trips['B']['served_ms']} (C makes none)",
        f"medians of: A list call {len(fig['a_list_all_seconds'])}, "
        f"B walks {len(fig['b_walk_25']['seconds'])}, A offset walks {len(walks)}, "
        f"round trips {len(fig['round_trip_ms']['A'])}, cold starts {len(fig['cold_start_seconds']['A'])}",
    ]


# ---------------------------------------------------------------- profiling a miss


async def profile_a(base_url: str, errlog: TextIO, stats_path: Path) -> None:
    """Spawn A under -X importtime (its stderr to errlog), then under cProfile for five list calls."""
    async with connected("A", base_url, python_flags=["-X", "importtime"], errlog=errlog) as a:
        await a.list_tools()
    async with connected("A", base_url, python_flags=["-m", "cProfile", "-o", str(stats_path)]) as a:
        for _ in range(5):
            await call(a, "list_sources", LIST_ALL)


def profile_report(base_url: str) -> str:
    """Explain a miss: the slowest imports of A's cold start, and where A's list calls spend CPU."""
    with tempfile.TemporaryFile("w+") as errlog, tempfile.TemporaryDirectory() as directory:
        stats_path = Path(directory) / "list.prof"
        anyio.run(profile_a, base_url, errlog, stats_path)
        errlog.seek(0)
        imports = []  # lines of "import time: self [us] | cumulative | imported package"
        for line in errlog:
            fields = line.removeprefix("import time:").split("|")
            if line.startswith("import time:") and len(fields) == 3 and fields[0].strip().isdigit():
                imports.append((int(fields[1]), int(fields[0]), fields[2].rstrip()))
        report = io.StringIO()
        print("== A's cold start under -X importtime: top imports by cumulative us (self us) ==", file=report)
        for cumulative, own, name in sorted(imports, reverse=True)[:20]:
            print(f"{cumulative:>9,} {own:>9,}  {name}", file=report)
        if not stats_path.exists():
            raise BenchError("A exited before cProfile could write its statistics")
        print("\n== A's process (startup + 5 list_sources refresh calls @50ms), cProfile ==", file=report)
        stats = pstats.Stats(str(stats_path), stream=report)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats("census_mcp", 15)
        return report.getvalue()


# ---------------------------------------------------------------- main


def measure(repeats: Repeats, with_profile: bool) -> tuple[Json, list[str], str]:
    """Run every figure: 2 and 3 against the 50 ms sandbox, then 1, 4, 5 and 6 against the instant one."""
    checks: list[str] = []
    profile = ""
    with serve_sandbox(SandboxConfig(size=SIZE, latency_seconds=LATENCY_SECONDS)) as slow:
        figures: Json = {}
        for figure in (a_list_figures, b_walk_figures, a_offset_walks):
            figures |= anyio.run(figure, slow, repeats, checks)
        if with_profile:
            profile = profile_report(slow.base_url)
    with serve_sandbox(SandboxConfig(size=SIZE, latency_seconds=0)) as fast:
        figures |= anyio.run(loopback_figures, fast, repeats)
        figures |= anyio.run(a_version_figures, fast, repeats, checks)
    return figures, checks, profile


def bench_error(exc: BaseException) -> BenchError | None:
    """The BenchError inside `exc`, which task groups may have wrapped in exception groups."""
    if isinstance(exc, BenchError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next((found for inner in exc.exceptions if (found := bench_error(inner))), None)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw figures to PATH")
    parser.add_argument("--profile", action="store_true", help="also profile A's cold start and list call")
    parser.add_argument("--quick", action="store_true", help="few samples: test the harness, not figures")
    args = parser.parse_args()
    quick = Repeats(list_call=2, walk=1, fresh_walk=1, warmup=2, round_trip=10, cold_start=2)
    started = time.perf_counter()
    try:
        figures, checks, profile = measure(quick if args.quick else Repeats(), args.profile)
    except Exception as exc:
        found = bench_error(exc)
        if found is None:
            raise
        print(f"bench: {found}", file=sys.stderr)
        return 1
    rows = build_rows(figures)
    print(render(rows), "", *notes(figures), "checks:", *(f"  {line}" for line in checks), sep="\n")
    print(f"total bench time {time.perf_counter() - started:.0f} s")
    if profile:
        print("", profile, sep="\n")
    if args.json:
        versions = {name: version(name) for name in ("census-mcp", "mcp", "fastmcp", "httpx2")}
        document = {
            "versions": versions | {"python": platform.python_version()},
            "figures": figures,
            "rows": [asdict(row) for row in rows],
            "checks": checks,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if all(line.startswith("ok") for line in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
