"""Serve the sandbox as a fake Census API on a port: `python -m census_mcp.sandbox --port 8080`.

Point any Census client (or census-mcp --base-url) at a printed URL, with that version's token:
API v1 with the workspace token, API v2 with the personal access token.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from census_mcp.sandbox import (
    FAULT_KINDS,
    SANDBOX_TOKENS,
    V2_OPERATIONS,
    FaultConfig,
    SandboxConfig,
    create_sandbox_app,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m census_mcp.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind. Default: 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8080, help="Port; 0 picks a free one. Default: 8080.")
    parser.add_argument("--size", type=int, default=60, help="Sources to seed. Default: 60.")
    parser.add_argument(
        "--any-token", action="store_true", help="Accept every bearer token (a soak's many users)."
    )
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds added to every request.")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="Share of API requests that fail.")
    parser.add_argument(
        "--fault-kinds", default=",".join(FAULT_KINDS), help="Comma list of faults. Default: all of them."
    )
    parser.add_argument(
        "--missing-v2",
        default="",
        help=f"Comma list of v2 operations whose routes are missing, among {', '.join(V2_OPERATIONS)}.",
    )
    parser.add_argument(
        "--missing-status", type=int, default=404, help="What a missing v2 route answers: 404, 405 or 410."
    )
    parser.add_argument(
        "--v1-retired", type=int, default=None, help="Answer every v1 request as retired: 410, 401 or 404."
    )
    args = parser.parse_args()
    try:
        faults = FaultConfig(rate=args.fault_rate, kinds=tuple(args.fault_kinds.split(",")))
        config = SandboxConfig(
            size=args.size,
            any_token=args.any_token,
            latency_seconds=args.latency,
            faults=faults,
            missing_v2=tuple(name for name in args.missing_v2.split(",") if name),
            missing_status=args.missing_status,
            v1_retired=args.v1_retired,
        )
    except ValueError as error:
        parser.error(str(error))
    server = uvicorn.Server(
        uvicorn.Config(create_sandbox_app(config), host=args.host, port=args.port, log_level="warning")
    )
    asyncio.run(_serve(server))


async def _serve(server: uvicorn.Server) -> None:
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            return await serving
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    for version, token in SANDBOX_TOKENS.items():
        print(
            f"Census sandbox API {version} at http://{host}:{port}/api/{version} (token {token})", flush=True
        )
    await serving


if __name__ == "__main__":
    main()
