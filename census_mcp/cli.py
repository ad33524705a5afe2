"""The command line: serve over stdio (the default), list the tools, or call one.

Logs go to stderr; stdout belongs to the MCP protocol (serve) or to the result (call).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from census_mcp import __version__, settings
from census_mcp.logs import configure_logging

_COMMANDS_HELP = """\
commands:
  (none)            serve MCP over stdio; this is what an MCP client launches
  tools             list the tools
  call TOOL [JSON]  call one tool through the MCP server in-process and print its text result,
                    e.g. census-mcp --sandbox call list_sources '{"test_status": "failed"}'
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="census-mcp",
        description="An MCP server for the sources of a Census (Fivetran Activations) workspace.",
        epilog=_COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"census-mcp {__version__}")
    settings.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="{tools,call}")
    commands.add_parser("tools", help="list the tools")
    call = commands.add_parser("call", help="call one tool and print its text result")
    call.add_argument("tool", help="tool name, e.g. list_sources")
    call.add_argument("arguments", nargs="?", default="{}", help="tool arguments as a JSON object")
    call.add_argument("--json", action="store_true", help="print the structured result as JSON too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = settings.from_arguments(args)
        for warning in config.warnings():
            print(f"census-mcp: warning: {warning}", file=sys.stderr)
        serving_http = args.command is None and config.transport == "http"
        if args.command != "tools":
            config.require_credentials(serving_http=serving_http)
        configure_logging(config)
        if serving_http:
            from census_mcp.http import create_http_app

            _serve_http(config, create_http_app(config))
            return 0

        from census_mcp.server import build_server

        server = build_server(config)
    except settings.SettingsError as exc:
        print(f"census-mcp: {exc}", file=sys.stderr)
        return 2
    if args.command == "tools":
        return _print_tools(server)
    if args.command == "call":
        try:
            arguments = json.loads(args.arguments)
        except json.JSONDecodeError as exc:
            print(f"census-mcp: the arguments are not valid JSON ({exc.msg}).", file=sys.stderr)
            return 2
        if not isinstance(arguments, dict):
            print("census-mcp: the arguments must be a JSON object.", file=sys.stderr)
            return 2
        return _call(server, args.tool, arguments, show_json=args.json)
    server.run()
    return 0


def _serve_http(config: settings.Settings, app: Any) -> None:
    """One process; for several workers, run census_mcp.asgi:create_app under uvicorn or gunicorn."""
    import uvicorn

    print(f"census-mcp: serving MCP at http://{config.host}:{config.port}/mcp", file=sys.stderr)
    uvicorn.run(app, host=config.host, port=config.port, log_config=None, log_level=config.log_level.lower())


def _print_tools(server: Any) -> int:
    import anyio

    for tool in anyio.run(server.list_tools):
        hints = tool.annotations
        kind = "read-only" if hints.read_only_hint else ("destructive" if hints.destructive_hint else "write")
        summary = (tool.description or "").splitlines()[0]
        print(f"{tool.name:<26} {kind:<11} {summary}")
    return 0


def _call(server: Any, tool: str, arguments: dict[str, Any], *, show_json: bool) -> int:
    import anyio
    from mcp import Client

    from census_mcp.server import result_text

    async def run() -> Any:
        async with Client(server) as client:
            return await client.call_tool(tool, arguments)

    result = anyio.run(run)
    print(result_text(result), file=sys.stderr if result.is_error else sys.stdout)
    if show_json and result.structured_content is not None:
        print(json.dumps(result.structured_content, indent=2))
    return 1 if result.is_error else 0
