"""HTTP load benchmark: census-mcp (A) and a no-op MCPServer (C), each in uvicorn workers, under many clients.

Why: served over streamable HTTP, census-mcp answers many users at once from a few worker processes.
This measures what that costs next to the floor the SDK and uvicorn set (C: one no-op tool, served the
same way, behind the same bearer gate), and proves that under load no call fails.

Everything stays on 127.0.0.1: the sandbox (1,000 sources, no added latency) runs in its own process
(bench/loopback.py), each server runs as `uvicorn ... --factory --workers N` in its own process tree,
and the load generator is asyncio in a process of its own (or split over several, --generators).
Each client loops over tool calls, one at a time, until the window ends; every call is one stateless
tools/call POST, sent exactly as `mcp.Client` sends it in the 2026-07-28 protocol (`request_body`).

Run it (about a minute, from the repository root):

    .venv/bin/python bench/load.py [--clients 200] [--seconds 20] [--workers 2] [--generators 2] [--json PATH]

The exit status is 1 when any of A's calls failed (HTTP status not 200, a JSON-RPC error, an
unreadable answer, or a tool result with isError), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import httpx2
from loopback import serve_sandbox

from census_mcp.sandbox import SANDBOX_TOKEN, RequestRecord, SandboxConfig
from census_mcp.sandbox.source_types import SOURCE_TYPES

# A: census-mcp, each worker with its own list cache; R: the same with the cache shared in Redis;
# C: the no-op floor.
Kind = Literal["A", "R", "C"]
Json = dict[str, Any]

BENCH_DIR = Path(__file__).resolve().parent
SIZE = 1000
AUTH_TOKEN = "bench-load-token-6d1f0a83c7e2b954"  # the bearer token both servers check; local and fake
PROTOCOL_VERSION = "2026-07-28"
# Longer than census-mcp's own 55 s per-call deadline: a slow call is a latency, not a failure.
CALL_TIMEOUT_SECONDS = 60.0
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
WARMUP_SECONDS = 2.0
SPAWN_SECONDS = 3.0  # time for the generator processes to start and import, before the warm-up
SERVER_LOG_LINES = 2000
TOP_FAILURE_KINDS = 5
SERVER_LOG_TAIL = 20
_RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
_WORKER = re.compile(r"Started server process \[(\d+)\]")
_STARTED = "Application startup complete."
_PROC = Path("/proc")


# ---------------------------------------------------------------- what the clients call


@dataclass(frozen=True)
class Call:
    """One tool call: the tool's name and its arguments."""

    tool: str
    arguments: Json


@dataclass(frozen=True)
class Catalog:
    """What the mixed calls draw from, taken from the sandbox's seeded workspace so every call is valid."""

    max_id: int
    types: tuple[str, ...]
    service_names: tuple[str, ...]
    name_words: tuple[str, ...]
    table_words: tuple[str, ...]

    @classmethod
    def of(cls, sources: Sequence[Json]) -> Catalog:
        names = " ".join(source["name"] for source in sources).lower()
        tables = {
            part
            for source in sources[:50]
            for data_source in source["data_sources"]
            for part in re.split(r"[._]", data_source["name"])
            if len(part) >= 4
        }
        return cls(
            max_id=max(source["id"] for source in sources),
            types=tuple(sorted({source["type"] for source in sources})),
            service_names=tuple(sorted(SOURCE_TYPES)),
            name_words=tuple(sorted({word for word in re.findall(r"[a-z]{4,}", names)}))[:30],
            table_words=tuple(sorted(tables))[:30],
        )


def _list_sources_filtered(rng: random.Random, catalog: Catalog) -> Json:
    """A model narrowing the list: one to three filters, sometimes ascending, varied page sizes."""
    filters: Json = {
        "type": rng.choice(catalog.types),
        "test_status": rng.choice(("passed", "failed", "untested")),
        "name_contains": rng.choice(catalog.name_words),
        "order": "asc",
    }
    chosen = rng.sample(sorted(filters), rng.randint(1, 3))
    return {key: filters[key] for key in chosen} | {"limit": rng.choice((10, 25, 50))}


def _list_source_tables(rng: random.Random, catalog: Catalog) -> Json:
    arguments: Json = {"source_id": rng.randint(1, catalog.max_id)}
    return arguments | ({"search": rng.choice(catalog.table_words)} if rng.random() < 0.5 else {})


# (weight, tool, arguments): list_sources dominates, as in a conversation about a workspace; without
# `refresh`, so most list calls are answered from each worker's 30 s cache, as they are in real use.
CENSUS_MIX: tuple[tuple[float, str, Callable[[random.Random, Catalog], Json]], ...] = (
    (0.25, "list_sources", lambda rng, catalog: {}),
    (0.10, "list_sources", lambda rng, catalog: {"offset": rng.randrange(0, catalog.max_id, 25)}),
    (0.15, "list_sources", _list_sources_filtered),
    (0.25, "get_source", lambda rng, catalog: {"source_id": rng.randint(1, catalog.max_id)}),
    (0.08, "list_source_types", lambda rng, catalog: {}),
    (0.07, "get_source_type", lambda rng, catalog: {"service_name": rng.choice(catalog.service_names)}),
    (0.10, "list_source_tables", _list_source_tables),
)


def next_call(kind: Kind, rng: random.Random, catalog: Catalog) -> Call:
    """The next call of one client: for A drawn from CENSUS_MIX, for C always the no-op."""
    if kind == "C":
        return Call("noop", {})
    _, tool, arguments = rng.choices(CENSUS_MIX, weights=[weight for weight, _, _ in CENSUS_MIX])[0]
    return Call(tool, arguments(rng, catalog))


# ---------------------------------------------------------------- one call on the wire


def request_headers(tool: str, token: str = AUTH_TOKEN) -> dict[str, str]:
    """The headers `mcp.Client` (mcp 2.3, auto mode) sends with a tools/call, plus the bearer token."""
    return {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        "Authorization": f"Bearer {token}",
    }


def request_body(call: Call, request_id: int) -> bytes:
    """A stateless tools/call: the protocol version and client info travel in _meta, with no initialize."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "census-mcp-load", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": call.tool, "arguments": call.arguments, "_meta": meta}
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return json.dumps(message, separators=(",", ":")).encode()


def sse_messages(text: str) -> Iterator[Json]:
    """The JSON-RPC messages of a text/event-stream body: each event's data lines, joined."""
    data: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line:
            if line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
            continue
        if data:
            yield json.loads("\n".join(data))
        data = []


def rpc_response(response: httpx2.Response, request_id: int) -> Json:
    """The JSON-RPC response to `request_id`, from a JSON body or from an SSE stream (which may carry
    notifications first); ValueError when there is none."""
    content_type = response.headers.get("content-type", "")
    messages: list[Json]
    if content_type.startswith("application/json"):
        messages = [response.json()]
    elif content_type.startswith("text/event-stream"):
        messages = list(sse_messages(response.text))
    else:
        raise ValueError(f"content type {content_type!r}")
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise ValueError("no response with the request's id")


def _kind(text: str) -> str:
    """A message as a kind of failure: numbers (ids, counts) masked, so that alike failures count as one."""
    return re.sub(r"\d+", "N", text)[:60]


async def call_tool(http: httpx2.AsyncClient, url: str, call: Call, request_id: int) -> str | None:
    """Send one tools/call; None when it worked, else the kind of failure, short enough to count by."""
    answer = await send(http, url, call, request_id)
    return answer if isinstance(answer, str) else None


async def send(
    http: httpx2.AsyncClient, url: str, call: Call, request_id: int, token: str = AUTH_TOKEN
) -> Json | str:
    """Send one tools/call with `token`; the tool's result when it worked, else the kind of failure."""
    try:
        response = await http.post(
            url, content=request_body(call, request_id), headers=request_headers(call.tool, token)
        )
    except httpx2.HTTPError as error:
        return f"transport: {type(error).__name__}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        message = rpc_response(response, request_id)
    except ValueError as error:  # json.JSONDecodeError is a ValueError too
        return f"unreadable answer: {str(error)[:60]}"
    if "error" in message:
        return f"JSON-RPC error {message['error'].get('code')}: {_kind(str(message['error'].get('message')))}"
    result = message.get("result")
    if not isinstance(result, dict):
        return "JSON-RPC response without a result"
    if result.get("isError"):
        texts = [block.get("text", "") for block in result.get("content", []) if block.get("type") == "text"]
        return f"isError {call.tool}: {_kind(' '.join(texts))}"
    if result.get("resultType", "complete") != "complete":
        return f"resultType {result['resultType']}"
    return result


# ---------------------------------------------------------------- the load generator


@dataclass(frozen=True)
class Plan:
    """One generator process's share of the load: which server, how many clients, when and how long.

    start_at is a time.time() instant, so that generators in several processes share one window;
    warm-up calls run for warmup_seconds before it and are not timed. max_calls, if given, bounds the
    calls of this plan, warm-up included; the window bounds them anyway.
    """

    url: str
    kind: Kind
    catalog: Catalog
    clients: int
    start_at: float
    seconds: float
    warmup_seconds: float = WARMUP_SECONDS
    max_calls: int | None = None
    seed: int = 0


@dataclass
class Tally:
    """What generators measured: per tool, the latencies of the calls started in the window; and
    failures by kind, warm-up included (a failure is a failure)."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    warmup_calls: int = 0

    @classmethod
    def merged(cls, tallies: Sequence[Tally]) -> Tally:
        merged = cls()
        failures: Counter[str] = Counter()
        for tally in tallies:
            for tool, latencies in tally.latencies_ms.items():
                merged.latencies_ms.setdefault(tool, []).extend(latencies)
            failures.update(tally.failures)
            merged.warmup_calls += tally.warmup_calls
        merged.failures = dict(failures)
        return merged


async def generate(plan: Plan) -> Tally:
    """Run plan.clients concurrent clients, each calling tools one after another until the window ends.

    One shared AsyncClient, with a connection per client, so that no client waits for another's
    connection: the wait measured is the server's. Clients arrive spread over the first half of the
    warm-up, as users do: a burst of connections would all be accepted by whichever worker woke first,
    and keep-alive would keep them there.
    """
    window_start = time.perf_counter() + (plan.start_at - time.time())
    window_end = window_start + plan.seconds
    warmup_start = window_start - plan.warmup_seconds
    request_ids = itertools.count(1)
    failures: Counter[str] = Counter()
    tally = Tally()
    limits = httpx2.Limits(max_connections=plan.clients, max_keepalive_connections=plan.clients)
    async with httpx2.AsyncClient(limits=limits, timeout=CALL_TIMEOUT_SECONDS) as http:

        async def client(index: int) -> None:
            rng = random.Random(plan.seed * 100_003 + index)
            arrival = warmup_start + plan.warmup_seconds / 2 * index / plan.clients
            await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
            while (started := time.perf_counter()) < window_end:
                request_id = next(request_ids)
                if plan.max_calls is not None and request_id > plan.max_calls:
                    return
                call = next_call(plan.kind, rng, plan.catalog)
                failure = await call_tool(http, plan.url, call, request_id)
                if failure is not None:
                    failures[failure] += 1
                if started < window_start:
                    tally.warmup_calls += 1
                    continue
                latency = (time.perf_counter() - started) * 1000
                tally.latencies_ms.setdefault(call.tool, []).append(latency)

        await asyncio.gather(*(client(index) for index in range(plan.clients)))
    tally.failures = dict(failures)
    return tally


def run_plan(plan: Plan) -> Tally:
    """A generator process's entry point (module level, so a spawned process can find it)."""
    return asyncio.run(generate(plan))


def run_generators(plans: Sequence[Plan], pids: Mapping[str, int | None]) -> tuple[Tally, Cpu]:
    """Run each plan in a process of its own, and meanwhile watch the CPU of `pids` and the generators.

    Even a single plan gets its own process, so that this one, which takes the CPU snapshots at the
    edges of the window (warm-up and start-up not counted), never competes with it. A generator that
    dies breaks the pool at once (ProcessPoolExecutor does not respawn it), so nothing loops.
    """
    start_at, seconds = plans[0].start_at, plans[0].seconds
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(plans), mp_context=context) as pool:
        running = [pool.submit(run_plan, plan) for plan in plans]
        pids = {
            **pids,
            **{f"generator {child.pid}": child.pid for child in multiprocessing.active_children()},
        }
        time.sleep(max(0.0, start_at - time.time()))
        before = CpuSnapshot.take(pids)
        wait(running, timeout=max(0.0, start_at + seconds - time.time()))  # early when max_calls are done
        cpu = Cpu(before, CpuSnapshot.take(pids))
        deadline = time.time() + max(0.0, start_at + seconds - time.time()) + CALL_TIMEOUT_SECONDS + 30
        tallies = [future.result(timeout=max(1.0, deadline - time.time())) for future in running]
    return Tally.merged(tallies), cpu


# ---------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Served:
    """A uvicorn server in its own processes: where it is, its worker pids, and its log (stderr)."""

    root: str
    workers: tuple[int, ...]
    log: deque[str]

    @property
    def mcp_url(self) -> str:
        return f"{self.root}/mcp"


def app_command(kind: Kind, workers: int) -> list[str]:
    """How to serve A, R or C with this interpreter: uvicorn's --factory, a free port, access log off."""
    app = {
        "A": ["census_mcp.asgi:create_app"],
        "R": ["census_mcp.asgi:create_app"],
        "C": ["load_noop_app:create_app", "--app-dir", str(BENCH_DIR)],
    }
    return [
        *(sys.executable, "-m", "uvicorn", *app[kind], "--factory", "--host", "127.0.0.1", "--port", "0"),
        *("--workers", str(workers), "--no-access-log", "--log-level", "info"),
    ]


def app_env(base_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without any CENSUS_ setting of the shell, plus the benchmark's own:
    the shared token mode, unless `settings` (environment variables; "" unsets one) say otherwise."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CENSUS_")}
    return env | {
        "CENSUS_API_TOKEN": SANDBOX_TOKEN,
        "CENSUS_API_BASE_URL": base_url,
        "CENSUS_MCP_AUTH_TOKEN": AUTH_TOKEN,
        **settings,
    }


def _ready(log: Sequence[str], workers: int) -> tuple[str, tuple[int, ...]] | None:
    """The root URL and worker pids once uvicorn logged its port and every worker's startup."""
    lines = list(log)
    root = next((match.group(1) for line in lines if (match := _RUNNING.search(line))), None)
    pids = tuple(int(match.group(1)) for line in lines if (match := _WORKER.search(line)))
    if root is None or len(pids) < workers or sum(_STARTED in line for line in lines) < workers:
        return None
    return root, pids[:workers]


@contextmanager
def serve(kind: Kind, env: Mapping[str, str], workers: int) -> Iterator[Served]:
    """Serve A or C under uvicorn with `workers` processes and environment `env` (see app_env) until
    the block ends; ready means every worker finished its startup and /healthz answers. Port 0: the
    parent binds a free port and logs it. With one worker, uvicorn serves in the process it starts.
    """
    process = subprocess.Popen(
        app_command(kind, workers),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so that a stuck worker can be stopped with it
    )
    log: deque[str] = deque(maxlen=SERVER_LOG_LINES)
    assert process.stderr is not None
    stderr = process.stderr
    # Drained for the server's whole life, so a chatty server never blocks on a full pipe.
    reader = threading.Thread(target=lambda: log.extend(line.rstrip() for line in stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while (ready := _ready(log, workers)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(list(log)[-SERVER_LOG_TAIL:])
                raise RuntimeError(f"{kind} did not start under uvicorn:\n{tail}")
            time.sleep(0.05)
        root, worker_pids = ready
        if httpx2.get(f"{root}/healthz", timeout=10).status_code != 200:
            raise RuntimeError(f"{kind}: /healthz did not answer 200")
        yield Served(root, worker_pids, log)
    finally:
        stop(process)
        reader.join(timeout=5)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM the uvicorn parent, which stops its workers; if it hangs, SIGKILL its process group.

    The group's id is the parent's pid, still ours until we reap it, so no other process is hit.
    """
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


# ---------------------------------------------------------------- who used the CPU


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process so far (Linux /proc); None when it cannot be read."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def box_busy_and_total() -> tuple[float, float] | None:
    """All CPUs' busy and total time so far, in clock ticks (Linux /proc/stat)."""
    try:
        values = [int(value) for value in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    idle = values[3] + values[4]  # idle and iowait
    return float(sum(values) - idle), float(sum(values))


def sandbox_pid() -> int | None:
    """The loopback sandbox's pid: the child of this process that runs census_mcp.sandbox."""
    for children in (_PROC / "self" / "task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                command = (_PROC / pid / "cmdline").read_bytes()
            except OSError:
                continue
            if b"census_mcp.sandbox" in command:
                return int(pid)
    return None


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of the processes that share the machine during a run, at one instant."""

    wall: float
    processes: dict[str, float | None]
    box: tuple[float, float] | None

    @classmethod
    def take(cls, pids: Mapping[str, int | None]) -> CpuSnapshot:
        processes = {name: None if pid is None else cpu_seconds(pid) for name, pid in pids.items()}
        return cls(time.perf_counter(), processes, box_busy_and_total())


@dataclass(frozen=True)
class Cpu:
    """CPU snapshots at the start and the end of the measured window."""

    before: CpuSnapshot
    after: CpuSnapshot

    def seconds(self, name: str) -> float | None:
        """CPU seconds the process `name` used in the window; None when it could not be read."""
        started, ended = self.before.processes.get(name), self.after.processes.get(name)
        return None if started is None or ended is None else ended - started

    def cores(self) -> dict[str, float | None]:
        """Average cores each process used in the window, and `box`: the whole machine's busy cores."""
        wall = self.after.wall - self.before.wall
        cores: dict[str, float | None] = {}
        for name in self.before.processes:
            used = self.seconds(name)
            cores[name] = None if used is None else round(used / wall, 3)
        if self.before.box is not None and self.after.box is not None:
            busy, total = (end - start for start, end in zip(self.before.box, self.after.box, strict=True))
            cores["box"] = round(busy / total * (os.cpu_count() or 1), 3) if total else None
        return cores


# ---------------------------------------------------------------- one server under load


@dataclass(frozen=True)
class Options:
    """The load: concurrent clients, measured seconds per server, uvicorn workers, generator processes."""

    clients: int = 200
    seconds: float = 20.0
    workers: int = 2
    generators: int = 2


@dataclass
class Outcome:
    """One server's figures: calls in the window, their rate and latencies, failures, and CPU use."""

    kind: Kind
    calls: int
    calls_per_second: float
    p50_ms: float
    p99_ms: float
    failures: dict[str, int]
    warmup_calls: int
    worker_pids: tuple[int, ...]
    cores: dict[str, float | None]
    worker_cpu_ms_per_call: float | None
    """The workers' CPU time in the window over its calls: what a call costs, whatever the load."""
    census_requests: int | None
    workspace_reads: int | None
    """How many times the workspace's sources were read whole (each read asks for page 1 once):
    what a shared cache saves, since every worker would otherwise read them in each window."""
    latencies_ms: dict[str, list[float]]
    """Per tool, every call's latency in the window."""
    server_log: list[str]
    """The end of the server's stderr when calls failed, to tell why; empty otherwise."""

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def per_tool(self) -> str:
        """Calls, p50 and p99 per tool, to tell which calls make the tail."""
        return ", ".join(
            f"{tool} {len(samples):,} ({percentile(samples, 0.5):.0f}/{percentile(samples, 0.99):.0f})"
            for tool, samples in sorted(self.latencies_ms.items())
        )


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of the values fall (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def make_plans(url: str, kind: Kind, catalog: Catalog, options: Options) -> list[Plan]:
    """Split the clients over the generator processes, with one window a little ahead for all of them."""
    start_at = time.time() + SPAWN_SECONDS + WARMUP_SECONDS
    clients, generators = options.clients, options.generators
    shares = [clients // generators + (index < clients % generators) for index in range(generators)]
    return [
        Plan(url, kind, catalog, share, start_at, options.seconds, seed=index)
        for index, share in enumerate(shares)
        if share
    ]


def load(
    served: Served,
    kind: Kind,
    catalog: Catalog,
    options: Options,
    census: Callable[[], list[RequestRecord]],
) -> Outcome:
    """Put one server under the load of `options`, and gather its figures; `census` counts the
    requests the sandbox has served, to tell how much of A's work reached Census."""
    census_before = len(census()) if kind != "C" else None
    pids: dict[str, int | None] = {f"worker {pid}": pid for pid in served.workers}
    tally, cpu = run_generators(
        make_plans(served.mcp_url, kind, catalog, options), pids | {"sandbox": sandbox_pid()}
    )
    latencies = [latency for samples in tally.latencies_ms.values() for latency in samples]
    worker_seconds = [cpu.seconds(name) for name in pids]
    cpu_per_call = None
    if latencies and None not in worker_seconds:
        cpu_per_call = sum(seconds or 0.0 for seconds in worker_seconds) / len(latencies) * 1000
    return Outcome(
        kind=kind,
        calls=len(latencies),
        calls_per_second=len(latencies) / options.seconds,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        failures=tally.failures,
        warmup_calls=tally.warmup_calls,
        worker_pids=served.workers,
        cores=cpu.cores(),
        worker_cpu_ms_per_call=cpu_per_call,
        census_requests=None if census_before is None else len(census()) - census_before,
        workspace_reads=None if census_before is None else _workspace_reads(census()[census_before:]),
        latencies_ms=tally.latencies_ms,
        server_log=server_log(served.log) if tally.failures else [],
    )


# ---------------------------------------------------------------- the report


def server_log(log: Sequence[str]) -> list[str]:
    """The end of a server's stderr without uvicorn's INFO lines (start-up, shutdown)."""
    return [line for line in log if not line.startswith("INFO:")][-SERVER_LOG_TAIL:]


def _cores(outcome: Outcome, prefix: str) -> str:
    """The cores used by the processes whose names start with `prefix`, one figure per process."""
    used = [value for name, value in outcome.cores.items() if name.startswith(prefix)]
    if not used or None in used:
        return "-"
    return " + ".join(f"{value:.2f}" for value in used if value is not None)


def _others(outcome: Outcome) -> str:
    """Cores the box was busy beyond the processes listed: other work on a shared machine, the kernel."""
    listed = [value for name, value in outcome.cores.items() if name != "box"]
    box = outcome.cores.get("box")
    if box is None or None in listed:
        return "-"
    return f"{max(0.0, box - sum(value for value in listed if value is not None)):.2f}"


def _workspace_reads(requests: Sequence[RequestRecord]) -> int:
    return sum(1 for r in requests if r.path.endswith("/sources") and "page=1&" in f"{r.query}&")


def _census_per_call(outcome: Outcome) -> str:
    """Census requests per call, warm-up included on both sides; "-" for C, which makes none."""
    if outcome.census_requests is None:
        return "-"
    return f"{outcome.census_requests / max(1, outcome.calls + outcome.warmup_calls):.2f}"


TABLE: tuple[tuple[str, Callable[[Outcome], str]], ...] = (
    ("calls in the window", lambda o: f"{o.calls:,}"),
    ("calls/s", lambda o: f"{o.calls_per_second:,.0f}"),
    ("p50 latency, ms", lambda o: f"{o.p50_ms:.1f}"),
    ("p99 latency, ms", lambda o: f"{o.p99_ms:.1f}"),
    ("failures", lambda o: f"{o.failed:,}"),
    (
        "worker CPU per call, ms",
        lambda o: "-" if o.worker_cpu_ms_per_call is None else f"{o.worker_cpu_ms_per_call:.2f}",
    ),
    ("cores used: uvicorn workers", lambda o: _cores(o, "worker")),
    ("cores used: sandbox", lambda o: _cores(o, "sandbox")),
    ("cores used: load generator", lambda o: _cores(o, "generator")),
    ("cores used: anything else", _others),
    ("cores used: whole box", lambda o: _cores(o, "box")),
    ("Census requests per call", _census_per_call),
    ("reads of all sources", lambda o: "-" if o.workspace_reads is None else f"{o.workspace_reads:,}"),
)


def render(outcomes: Mapping[Kind, Outcome]) -> str:
    """The side-by-side table: a row per figure, a column per server."""
    names = {"A": "A census-mcp", "R": "R + Redis cache", "C": "C no-op"}
    rows = [("figure", *(names[kind] for kind in outcomes))]
    rows += [(label, *(value(outcome) for outcome in outcomes.values())) for label, value in TABLE]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        " | ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def notes(outcomes: Mapping[Kind, Outcome], options: Options) -> list[str]:
    """What a reader needs to trust or question the table, and the kinds of any failures."""
    lines = [
        f"{options.clients} concurrent clients, {options.seconds:g} s measured per server after a "
        f"{WARMUP_SECONDS:g} s warm-up; {options.workers} uvicorn workers per server; "
        f"{options.generators} load generator process(es); {os.cpu_count()} CPUs shared by all of them "
        "and the sandbox; cores used are averages over the measured window",
        f"mcp {version('mcp')}, httpx2 {version('httpx2')}, uvicorn {version('uvicorn')}, "
        f"Python {platform.python_version()}; protocol {PROTOCOL_VERSION}, stateless, bearer auth on both",
    ]
    for kind, outcome in outcomes.items():
        lines.append(f"{kind} calls by tool (p50/p99 ms): {outcome.per_tool()}")
        top = sorted(outcome.failures.items(), key=lambda item: -item[1])[:TOP_FAILURE_KINDS]
        lines += [f"{kind} failed {count:,} x {failure}" for failure, count in top]
        lines += [f"{kind} server log: {line}" for line in outcome.server_log]
    return lines


def measure(options: Options) -> dict[Kind, Outcome]:
    """A, then R (when redis-server is installed), then C, each in its own uvicorn, against one
    sandbox process at 0 ms latency."""
    outcomes: dict[Kind, Outcome] = {}
    with serve_sandbox(SandboxConfig(size=SIZE, latency_seconds=0)) as sandbox, serve_redis() as redis_url:
        catalog = Catalog.of(sandbox.sources)
        settings: dict[Kind, dict[str, str]] = {"A": {}, "C": {}}
        if redis_url is not None:
            settings["R"] = {"CENSUS_MCP_CACHE_URL": redis_url}
        for kind in ("A", "R", "C"):
            if kind in settings:
                with serve(kind, app_env(sandbox.base_url, **settings[kind]), options.workers) as served:
                    outcomes[kind] = load(served, kind, catalog, options, sandbox.requests)
    return outcomes


@contextmanager
def serve_redis() -> Iterator[str | None]:
    """A redis-server of its own on a free loopback port, keeping nothing on disk; None (and R is
    left out) when none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        print(
            "redis-server is not installed (apt-get install -y redis-server): R is left out.", file=sys.stderr
        )
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measured seconds per server (default 20)"
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server (default 2)")
    parser.add_argument("--generators", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the raw figures to PATH")
    args = parser.parse_args()
    options = Options(args.clients, args.seconds, args.workers, args.generators)
    if min(options.clients, options.workers, options.generators) < 1 or options.seconds <= 0:
        parser.error("--clients, --workers and --generators must be at least 1, and --seconds above 0")
    started = time.perf_counter()
    outcomes = measure(options)
    print(render(outcomes), "", *notes(outcomes, options), sep="\n")
    failed = sum(outcomes[kind].failed for kind in ("A", "R") if kind in outcomes)
    passed = failed == 0
    print(f"no failures for census-mcp: {'PASS' if passed else 'FAIL'} ({failed:,} failed calls)")
    print(f"total bench time {time.perf_counter() - started:.0f} s")
    if args.json:
        document = {
            "options": asdict(options),
            "versions": {name: version(name) for name in ("census-mcp", "mcp", "httpx2", "uvicorn")},
            "cpus": os.cpu_count(),
            "outcomes": {kind: asdict(outcome) for kind, outcome in outcomes.items()},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
