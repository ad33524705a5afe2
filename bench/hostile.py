"""What hostile HTTP costs census-mcp, and whether it stalls everyone else.

Why: any holder of a token on a team server can send whatever JSON it likes, and anyone who can
reach it can open sockets. A request must be refused in time that does not grow with its size,
and must not hold the event loop: the health check (and every other user) must keep answering
while hostile requests run. A caller without a valid token must cost no more than a 401.

Part `cost`:
It serves `census-mcp --transport http --sandbox` on 127.0.0.1 twice: with the default body limit
(512 KiB), where the largest requests are refused by their size, and with the limit raised to 8 MiB,
where those with many keys are refused by the gate's count of commas and colons and the 3 MB name
reaches the argument bounds the tools check before any validation. For each kind of
request it reports the server's CPU per request (from /proc, averaged over the requests sent) and
the slowest /healthz answer while 8 of them run at once. Targets: under 20 ms of CPU per hostile
request, and /healthz under 50 ms throughout.

Part `sockets`: for each auth mode (shared token, passthrough, OAuth), with the default limits:

- 990 connections without a token, each declaring a 512 KiB body, sending 511 KiB of it and
  stalling: how they are answered, how long each holds its slot (timed by this client, so its
  own delays count too), the most slots held at once (the server's sockets, sampled every
  10 ms), and the server's RSS before, at its peak (VmHWM, reset first) and after they end, with
  how long RSS takes to come back within 20% of where it was. Targets: 401 for each, the median
  slot held under 1 s, the peak under 50 MB above the start, back within 20% within 5 s.
- in passthrough, the same with a token of a token's shape (all that mode can check before Census
  sees it): the body budget (32 MiB) lets some in, refuses the rest with 503 at once; those let
  in get 408 when the body deadline passes. The worst a shaped token can cost.
- the fail point: sockets that send half a request head and stall, 100 at a time, until /healthz
  stops answering (uvicorn's --max-connections, 1,000, counts every socket); then, with all of
  them stalled, how long until /healthz answers again (the header deadline, 5 s).

    .venv/bin/python bench/hostile.py [--part cost|sockets] [--repeats 24]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx2
from load import AUTH_TOKEN, Call, Json, request_body, request_headers

CPU_TARGET_MS = 20.0
HEALTH_TARGET_MS = 50.0
CONCURRENT = 8
TICKS = os.sysconf("SC_CLK_TCK")


def tool_call(arguments: Json) -> bytes:
    """A list_sources call with these arguments, as mcp.Client sends it (see load.py)."""
    return request_body(Call("list_sources", arguments), 1)


HOSTILE: dict[str, Callable[[], bytes]] = {
    "100,000 unknown keys (1.7 MB)": lambda: tool_call({f"k{n}": n for n in range(100_000)}),
    "one 3 MB argument name": lambda: tool_call({"K" * 3_000_000: 1}),
    "20,000 unknown keys (300 KB)": lambda: tool_call({f"k{n}": n for n in range(20_000)}),
    "1,000 unknown keys (14 KB)": lambda: tool_call({f"k{n}": n for n in range(1_000)}),
}
HEADERS = request_headers("list_sources")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS), or its peak since the last reset (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} for process {pid}")


def reset_peak(pid: int) -> None:
    """Starts VmHWM afresh from the current RSS (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (its listener and connections), from /proc."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):  # closed while counted
            count += os.readlink(fd).startswith("socket:")
    return count


@contextmanager
def sampling(sample: Callable[[], float], every: float) -> Iterator[list[float]]:
    """Calls `sample` every `every` seconds, in a thread, until the block ends; yields what it
    returned, as it comes."""
    samples: list[float] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            samples.append(sample())
            time.sleep(every)

    sampler = threading.Thread(target=run)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()


@contextmanager
def serving(*options: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [str(Path(sys.executable).parent / "census-mcp"), "--transport", "http", "--sandbox"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CENSUS_")}
    env |= {"CENSUS_MCP_AUTH_TOKEN": AUTH_TOKEN, "CENSUS_MCP_SANDBOX_STATE": "off"}
    server = subprocess.Popen(
        [*command, "--port", str(port), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{root}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.05)
        yield root, server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass
class Figure:
    config: str
    request: str
    status: int
    answer_bytes: int
    cpu_ms: float
    health_max_ms: float


@contextmanager
def probing_health(root: str) -> Iterator[list[float]]:
    """Ask /healthz every 2 ms until the block ends; yields the latencies, in ms, as they come."""
    with httpx2.Client(timeout=10) as http:

        def latency_ms() -> float:
            started = time.perf_counter()
            http.get(f"{root}/healthz")
            return (time.perf_counter() - started) * 1000

        with sampling(latency_ms, 0.002) as health:
            yield health


def idle_health_ms(root: str, seconds: float = 2.0) -> float:
    """The slowest /healthz answer with no other traffic: the machine's own noise, for comparison."""
    with probing_health(root) as health:
        time.sleep(seconds)
    return max(health, default=0.0)


def measure(root: str, pid: int, body: bytes, repeats: int) -> tuple[int, int, float, float]:
    """Send `body` `repeats` times (8 at once), sampling /healthz all the while."""
    with httpx2.Client(timeout=60) as http:
        first = http.post(f"{root}/mcp", content=body, headers=HEADERS)
    before = cpu_seconds(pid)

    def send_some(count: int) -> None:
        with httpx2.Client(timeout=60) as http:
            for _ in range(count):
                http.post(f"{root}/mcp", content=body, headers=HEADERS)

    senders = [threading.Thread(target=send_some, args=(repeats // CONCURRENT,)) for _ in range(CONCURRENT)]
    with probing_health(root) as health:
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    sent = (repeats // CONCURRENT) * CONCURRENT
    # The health probes' own CPU is in the figure too: a few µs each, stated in the notes.
    cpu_ms = (cpu_seconds(pid) - before) * 1000 / sent
    return first.status_code, len(first.content), cpu_ms, max(health, default=0.0)


def cost_part(repeats: int) -> None:
    """Part `cost`: CPU per hostile request, and /healthz meanwhile."""
    bodies = {name: make() for name, make in HOSTILE.items()}
    figures: list[Figure] = []
    idle: list[float] = []
    for config, options in (
        ("default limits", ()),
        ("body limit 8 MiB", ("--max-request-bytes", str(8 << 20))),
    ):
        with serving(*options) as (root, pid):
            idle.append(idle_health_ms(root))
            for name, body in bodies.items():
                status, size, cpu_ms, health_ms = measure(root, pid, body, repeats)
                figures.append(Figure(config, name, status, size, cpu_ms, health_ms))
    header = (
        "config",
        "hostile request",
        "status",
        "answer B",
        "CPU/request ms",
        "max /healthz ms",
        "result",
    )
    rows = [
        (
            f.config,
            f.request,
            str(f.status),
            f"{f.answer_bytes:,}",
            f"{f.cpu_ms:.2f}",
            f"{f.health_max_ms:.1f}",
            "pass" if f.cpu_ms < CPU_TARGET_MS and f.health_max_ms < HEALTH_TARGET_MS else "MISS",
        )
        for f in figures
    ]
    table(header, rows)
    print(
        f"\ntargets: CPU per hostile request < {CPU_TARGET_MS:.0f} ms; /healthz < {HEALTH_TARGET_MS:.0f} ms "
        f"while {CONCURRENT} run at once. CPU is the server process's, from /proc, over {repeats} "
        "requests of each kind, the concurrent /healthz probes included."
    )
    print(
        f"baseline, the slowest /healthz with no hostile traffic, ms: {', '.join(f'{ms:.1f}' for ms in idle)}"
    )


SLOW_SOCKETS = 990
DECLARED_BYTES = 512 * 1024
SENT_BYTES = 511 * 1024
WATCH_SECONDS = 20.0
HELD_TARGET_S = 1.0
PEAK_TARGET_MB = 50.0
BACK_WITHIN = 0.2
BACK_TARGET_S = 5.0
SHAPED_TOKEN = "secret-token:bench-hostile-shaped-0123456789"
# Where nothing answers: no request here ever gets as far as checking a token with it.
UNREACHABLE_ISSUER = "http://127.0.0.1:9"
MODES: dict[str, tuple[str, ...]] = {
    "shared token": ("--auth", "token"),
    "passthrough": ("--auth", "passthrough"),
    "OAuth": ("--auth", "oauth", "--oauth-issuer", UNREACHABLE_ISSUER),
}
HALF_HEAD = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
FAIL_STEP = 100
FAIL_MOST = 1500


@dataclass
class Connection:
    sock: socket.socket
    unsent: memoryview
    opened: float
    answer: bytes = b""
    closed_after: float | None = None


def slow_bodies(port: int, count: int, token: str | None) -> list[Connection]:
    """`count` connections, each sending a head that declares a DECLARED_BYTES body, then as much of
    SENT_BYTES of it as the server takes, and never the rest; each watched until the server closes
    it, or WATCH_SECONDS pass."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nContent-Length: {DECLARED_BYTES}\r\n"
        f"{authorization}\r\n"
    ).encode()
    request = memoryview(head + b" " * SENT_BYTES)
    selector = selectors.DefaultSelector()
    connections: list[Connection] = []
    open_ = 0
    deadline = time.monotonic() + WATCH_SECONDS
    while (open_ or len(connections) < count) and time.monotonic() < deadline:
        # Connections are opened while the others are watched, ten at a time, so that how long the
        # server holds one is measured from its own opening.
        for _ in range(min(10, count - len(connections))):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            connection = Connection(sock, request, time.monotonic())
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, connection)
            connections.append(connection)
            open_ += 1
        opening = len(connections) < count
        for key, events in selector.select(timeout=0 if opening else 0.1):
            connection = key.data
            if events & selectors.EVENT_WRITE:
                try:
                    sent = connection.sock.send(connection.unsent)
                    connection.unsent = connection.unsent[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    connection.unsent = connection.unsent[:0]  # refused: what was answered is still read
                if not connection.unsent:
                    selector.modify(connection.sock, selectors.EVENT_READ, connection)
            if not events & selectors.EVENT_READ:
                continue
            try:
                received = connection.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                received = b""  # reset by the server: closed all the same
            connection.answer += received
            if received:
                continue
            connection.closed_after = time.monotonic() - connection.opened
            selector.unregister(connection.sock)
            connection.sock.close()
            open_ -= 1
    for connection in connections:
        if connection.closed_after is None:
            connection.sock.close()
    selector.close()
    return connections


def answers(connections: list[Connection]) -> str:
    """The statuses the connections were answered with, counted: `401 x990`."""
    counted: dict[str, int] = {}
    for connection in connections:
        status = connection.answer.split(b" ", 2)[1].decode() if connection.answer else "none"
        counted[status] = counted.get(status, 0) + 1
    return ", ".join(f"{status} x{count}" for status, count in sorted(counted.items()))


@dataclass
class Burst:
    mode: str
    kind: str
    answers: str
    held_median_s: float
    held_max_s: float
    slots_at_once: int
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    back_after_s: float | None
    expected: str
    """The answers that pass: `401` (each, at once), or the passthrough budget's `408`/`503` mix."""

    @property
    def passed(self) -> bool:
        statuses = {part.split(" x")[0] for part in self.answers.split(", ")}
        return (
            statuses <= set(self.expected.split("/"))
            and (self.expected != "401" or self.held_median_s < HELD_TARGET_S)
            and self.rss_peak_mb - self.rss_before_mb < PEAK_TARGET_MB
            and self.back_after_s is not None
            and self.back_after_s <= BACK_TARGET_S
        )


def burst(mode: str, kind: str, pid: int, port: int, token: str | None, expected: str) -> Burst:
    """One burst of slow bodies, with the server's RSS before, at its peak and after."""
    before = rss_mb(pid)
    idle_sockets = open_sockets(pid)
    reset_peak(pid)
    with sampling(lambda: open_sockets(pid), 0.01) as counts:
        connections = slow_bodies(port, SLOW_SOCKETS, token)
    peak = rss_mb(pid, "VmHWM")
    ended = time.monotonic()
    back_after = None
    while time.monotonic() - ended < 2 * BACK_TARGET_S:
        if rss_mb(pid) <= before * (1 + BACK_WITHIN):
            back_after = time.monotonic() - ended
            break
        time.sleep(0.1)
    held = [c.closed_after if c.closed_after is not None else WATCH_SECONDS for c in connections]
    return Burst(
        mode,
        kind,
        answers(connections),
        statistics.median(held),
        max(held),
        int(max(counts, default=idle_sockets)) - idle_sockets,
        before,
        peak,
        rss_mb(pid),
        back_after,
        expected,
    )


def healthy(root: str) -> bool:
    try:
        return httpx2.get(f"{root}/healthz", timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


@dataclass
class FailPoint:
    mode: str
    sockets: int | None
    """How many half-head sockets were open when /healthz first failed; None: it never did."""
    recovered_after_s: float | None
    """Once they all stalled, how long until /healthz answered again."""


def fail_point(mode: str, root: str, port: int) -> FailPoint:
    """Opens sockets that send half a request head, FAIL_STEP at a time, asking /healthz after each
    step; then lets them all stall and times how long until /healthz answers again."""
    with ExitStack() as stack:
        sockets: list[socket.socket] = []
        failed_at = None
        while len(sockets) < FAIL_MOST:
            for _ in range(FAIL_STEP):
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
                sock.sendall(HALF_HEAD)
                sockets.append(sock)
            if not healthy(root):
                failed_at = len(sockets)
                break
        stalled = time.monotonic()
        recovered = None
        while time.monotonic() - stalled < 60:
            if healthy(root):
                recovered = time.monotonic() - stalled
                break
            time.sleep(0.1)
    return FailPoint(mode, failed_at, recovered)


def sockets_part() -> None:
    """Part `sockets`: no-token slow bodies, shaped-token slow bodies, and the fail point, per mode."""
    bursts: list[Burst] = []
    fails: list[FailPoint] = []
    for mode, options in MODES.items():
        with serving(*options) as (root, pid):
            port = int(root.rsplit(":", 1)[1])
            httpx2.get(f"{root}/healthz")
            bursts.append(burst(mode, "no token", pid, port, None, "401"))
            if mode == "passthrough":
                bursts.append(burst(mode, "a token's shape", pid, port, SHAPED_TOKEN, "408/503"))
            fails.append(fail_point(mode, root, port))
    header = (
        "mode",
        f"{SLOW_SOCKETS} slow bodies",
        "answers",
        "slot held, median / max s",
        "slots at once",
        "RSS before / peak / after, MB",
        "back within 20%, s",
        "result",
    )
    rows = [
        (
            b.mode,
            b.kind,
            b.answers,
            f"{b.held_median_s:.2f} / {b.held_max_s:.2f}",
            f"{b.slots_at_once:,}",
            f"{b.rss_before_mb:.0f} / {b.rss_peak_mb:.0f} / {b.rss_after_mb:.0f}",
            "-" if b.back_after_s is None else f"{b.back_after_s:.1f}",
            "pass" if b.passed else "MISS",
        )
        for b in bursts
    ]
    table(header, rows)
    print(
        f"\neach connection declares a {DECLARED_BYTES // 1024} KiB body, sends {SENT_BYTES // 1024} KiB of "
        f"it and stalls; how long each is held is timed by this client, its own delays included, and the "
        "slots held at once are the server's sockets, sampled every 10 ms. targets: answered at once "
        f"(no token: 401, the median slot held < {HELD_TARGET_S:.0f} s); "
        f"RSS peak < {PEAK_TARGET_MB:.0f} MB above the start, back within {BACK_WITHIN:.0%} of it within "
        f"{BACK_TARGET_S:.0f} s of the burst's end.\n"
    )
    table(
        ("mode", "half-head sockets when /healthz failed", "recovery once they stall, s"),
        [
            (
                f.mode,
                "none up to " + str(FAIL_MOST) if f.sockets is None else f"{f.sockets:,}",
                "-" if f.recovered_after_s is None else f"{f.recovered_after_s:.1f}",
            )
            for f in fails
        ],
    )
    print(
        f"\nsockets added {FAIL_STEP} at a time, /healthz asked after each step; each sends "
        f"{HALF_HEAD!r} and stalls."
    )


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--part", choices=("cost", "sockets"), help="one part only (default: both)")
    parser.add_argument("--repeats", type=int, default=24, help="hostile requests of each kind (8 at once)")
    args = parser.parse_args()
    if args.part in (None, "cost"):
        cost_part(args.repeats)
    if args.part in (None, "sockets"):
        print()
        sockets_part()
    return 0


if __name__ == "__main__":
    sys.exit(main())
