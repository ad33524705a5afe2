"""Serve the project's sandbox on 127.0.0.1 in its own process, for the servers to reach over HTTP.

Its own process, so that its work never competes for the interpreter lock with the benchmark's
clients: the figures then measure the servers, not the harness.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2

from census_mcp.sandbox import SANDBOX_TOKEN, SandboxConfig
from census_mcp.sandbox.app import RequestRecord
from census_mcp.sandbox.seed import build_workspace

_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/api/v1")


@dataclass(frozen=True)
class LoopbackSandbox:
    """A running sandbox: its API v1 base URL, its seeded sources, and its request log on demand."""

    base_url: str
    sources: list[dict[str, Any]]

    def api_url(self, version: str) -> str:
        """The base URL of API `version` (v1 or v2): the same workspace either way."""
        return self.base_url.removesuffix("/api/v1") + f"/api/{version}"

    def requests(self) -> list[RequestRecord]:
        root = self.base_url.removesuffix("/api/v1")
        headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
        log = httpx2.get(f"{root}/_sandbox/requests", headers=headers, timeout=10).json()
        # The log's own request is the last entry; it is not the servers' traffic.
        return [RequestRecord(**entry) for entry in log if entry["path"] != "/_sandbox/requests"]


@contextmanager
def serve_sandbox(config: SandboxConfig) -> Iterator[LoopbackSandbox]:
    """Serve a fresh sandbox at a free loopback port until the block ends."""
    command = [sys.executable, "-m", "census_mcp.sandbox", "--port", "0", "--size", str(config.size)]
    command += ["--latency", str(config.latency_seconds), *(["--any-token"] if config.any_token else [])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        match = _URL.search(process.stdout.readline())
        if match is None:
            raise RuntimeError("the loopback sandbox did not start")
        yield LoopbackSandbox(f"{match.group(1)}/api/v1", build_workspace(config.size, config.seed))
    finally:
        process.terminate()
        process.wait(timeout=10)
