"""Serve the sandbox as a fake Census API on a port: `python -m census_mcp.sandbox --port 8080`.

Point any Census client (or census-mcp --base-url) at the printed URL, with the sandbox token.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from census_mcp.sandbox import FAULT_KINDS, SANDBOX_TOKEN, FaultConfig, SandboxConfig, create_sandbox_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m census_mcp.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind. Default: 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8080, help="Port; 0 picks a free one. Default: 8080.")
    parser.add_argument("--size", type=int, default=60, help="Sources to seed. Default: 60.")
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds added to every request.")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="Share of API requests that fail.")
    parser.add_argument(
        "--fault-kinds", default=",".join(FAULT_KINDS), help="Comma list of faults. Default: all of them."
    )
    args = parser.parse_args()
    try:
        faults = FaultConfig(rate=args.fault_rate, kinds=tuple(args.fault_kinds.split(",")))
    except ValueError as error:
        parser.error(str(error))
    config = SandboxConfig(size=args.size, latency_seconds=args.latency, faults=faults)
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
    print(f"Census sandbox at http://{host}:{port}/api/v1 (token {SANDBOX_TOKEN})", flush=True)
    await serving


if __name__ == "__main__":
    main()
