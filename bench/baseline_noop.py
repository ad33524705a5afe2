"""Baseline C: a bare MCPServer with one no-op tool over stdio, the floor the SDK itself sets.

Run: python bench/baseline_noop.py
"""

from __future__ import annotations

from mcp.server import MCPServer

server = MCPServer(name="noop")


@server.tool()
async def noop() -> str:
    """Do nothing; async like census-mcp's tools, so no worker-thread hop is measured."""
    return "ok"


if __name__ == "__main__":
    server.run()
