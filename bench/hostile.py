"""What one hostile request costs census-mcp over HTTP, and whether it stalls everyone else.

Why: any holder of a token on a team server can send whatever JSON it likes. A request must be
refused in time that does not grow with its size, and must not hold the event loop: the health
check (and every other user) must keep answering while hostile requests run.

It serves `census-mcp --transport http --sandbox` on 127.0.0.1 twice: with the default body limit
(512 KiB), where the largest requests are refused by their size, and with the limit raised to 8 MiB,
where those with many keys are refused by the gate's count of commas and colons and the 3 MB name
reaches the argument bounds the tools check before any validation. For each kind of
request it reports the server's CPU per request (from /proc, averaged over the requests sent) and
the slowest /healthz answer while 8 of them run at once. Targets: under 20 ms of CPU per hostile
request, and /healthz under 50 ms throughout.

    .venv/bin/python bench/hostile.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx2.Client(timeout=10) as http:
            while not stop.is_set():
                started = time.perf_counter()
                http.get(f"{root}/healthz")
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.002)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        yield health
    finally:
        stop.set()
        prober.join()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=24, help="hostile requests of each kind (8 at once)")
    args = parser.parse_args()
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
                status, size, cpu_ms, health_ms = measure(root, pid, body, args.repeats)
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
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(
        f"\ntargets: CPU per hostile request < {CPU_TARGET_MS:.0f} ms; /healthz < {HEALTH_TARGET_MS:.0f} ms "
        f"while {CONCURRENT} run at once. CPU is the server process's, from /proc, over {args.repeats} "
        "requests of each kind, the concurrent /healthz probes included."
    )
    print(
        f"baseline, the slowest /healthz with no hostile traffic, ms: {', '.join(f'{ms:.1f}' for ms in idle)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
