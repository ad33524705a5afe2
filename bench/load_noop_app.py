"""Baseline C for the load benchmark: baseline_noop's one no-op tool, served over HTTP like census-mcp.

Why: the load figures of census-mcp only mean something next to the floor the SDK, uvicorn and the
transport set on the same machine under the same load. So C is served exactly as census-mcp is:
stateless streamable HTTP at /mcp, behind census-mcp's own bearer gate (same check, same /healthz),
in uvicorn workers. Only the tool differs.

    CENSUS_MCP_AUTH_TOKEN=t uvicorn load_noop_app:create_app --factory --app-dir bench \
        --host 127.0.0.1 --port 8000 --workers 2
"""

from __future__ import annotations

import os

from baseline_noop import server
from pydantic import SecretStr
from starlette.types import ASGIApp

from census_mcp.http import MCP_PATH, Gate
from census_mcp.settings import Settings


def create_app() -> ASGIApp:
    """The no-op server's stateless HTTP app, behind the bearer token in CENSUS_MCP_AUTH_TOKEN."""
    settings = Settings(transport="http", auth_token=SecretStr(os.environ["CENSUS_MCP_AUTH_TOKEN"]))
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, stateless_http=True)
    return Gate(app, settings)
