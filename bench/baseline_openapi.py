"""Baseline B: the MCP server FastMCP generates from an OpenAPI description of the Sources API, over stdio.

This is what "just wrap the REST API" gives: one tool per operation, raw Census pages as results.

Run: python bench/baseline_openapi.py --base-url http://127.0.0.1:PORT/api/v1 --token TOKEN
(or set CENSUS_API_BASE_URL and CENSUS_API_TOKEN).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import httpx2
from fastmcp import FastMCP

SPEC_PATH = Path(__file__).with_name("census_sources_openapi.json")


def build_server(base_url: str, token: str) -> FastMCP:
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    client = httpx2.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return FastMCP.from_openapi(openapi_spec=spec, client=client, name="census-sources-openapi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("CENSUS_API_BASE_URL"))
    parser.add_argument("--token", default=os.environ.get("CENSUS_API_TOKEN"))
    args = parser.parse_args()
    if not args.base_url or not args.token:
        parser.error("give --base-url and --token, or set CENSUS_API_BASE_URL and CENSUS_API_TOKEN")
    build_server(args.base_url, args.token).run(transport="stdio", show_banner=False)


if __name__ == "__main__":
    main()
