"""The command line: serve (stdio by default), list or describe the tools, call one, check a setup.

Logs go to stderr; stdout belongs to the MCP protocol (serve) or to the result (the commands).
Options are accepted anywhere on the line, before or after the command, as in git or gh.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from census_mcp import __version__, settings
from census_mcp.logs import configure_logging

_COMMANDS_HELP = """\
commands:
  (none)            serve MCP (stdio by default); this is what an MCP client launches
  tools [NAME]      list the tools, or show one tool's arguments and an example call
  call TOOL [JSON]  call one tool through the MCP server in-process and print its text result,
                    e.g. census-mcp --sandbox call list_sources '{"test_status": "failed"}'
  doctor            check the setup the server would use: token, API, network, Census, tools
  sandbox-reset     forget what earlier runs did to the sandbox (see --sandbox-state)

Each command's --help shows its own options; the options above go before or after it.
"""
_GLOBAL_OPTIONS = """\
The options every command takes (--sandbox, --token, --api-version,
--read-only, ...) go before or after it: see census-mcp --help."""
_JSON_HELP = (
    "tools: print tools/list as a client receives it; "
    "call: one JSON document (isError, text, structuredContent); doctor: its checks as JSON"
)
# Each command: what it does (the first line of its --help), and what its --json prints, if it has one.
_COMMANDS = {
    "tools": (
        "List the tools census-mcp offers, or describe one: its arguments and an\nexample call.",
        "print tools/list (or the one tool) as a client receives it",
    ),
    "call": (
        "Call one tool through the real MCP server, in this process, and print its\ntext result.",
        "print one JSON document: isError, text, structuredContent",
    ),
    "doctor": (
        "Check the setup the server would use, one line per check: token, API,\n"
        "network, Census, groups (API v2), tools.",
        "print the checks as one JSON document",
    ),
    "sandbox-reset": ("Forget what earlier runs did to the built-in sandbox: it starts afresh.", None),
}


class UsageError(Exception):
    """A mistake on the command line, said in one line and a hint rather than the whole usage."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, with a command's --help opening on what it does and a mistake said in one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)

    def format_help(self) -> str:
        """argparse's own help, in its own parts, with what the command does before its usage."""
        formatter = self._get_formatter()
        formatter.add_text(self.description)
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        for group in self._action_groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="census-mcp",
        description="An MCP server for the sources of a Census (Fivetran Activations) workspace.",
        epilog=_COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"census-mcp {__version__}")
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    settings.add_arguments(parser)
    # The same options after a command, left out of the namespace unless given there.
    after = _Parser(add_help=False)
    settings.add_arguments(after, after_command=True)
    commands = parser.add_subparsers(dest="command", metavar="{tools,call,doctor,sandbox-reset}")
    parsers = {
        name: commands.add_parser(
            name,
            parents=[after],
            description=does,
            epilog=_GLOBAL_OPTIONS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for name, (does, _) in _COMMANDS.items()
    }
    parsers["tools"].add_argument(
        "name", nargs="?", help="a tool's name: show its arguments and an example call"
    )
    parsers["call"].add_argument("tool", help="tool name, e.g. list_sources")
    parsers["call"].add_argument("arguments", nargs="?", help="tool arguments as a JSON object (default {})")
    for name, (_, as_json) in _COMMANDS.items():
        if as_json:
            parsers[name].add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=as_json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except UsageError as mistake:
        return _usage_error(mistake)
    except BrokenPipeError:
        # The reader went away (`census-mcp tools | head`): nothing more to say, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _usage_error(mistake: UsageError) -> int:
    """One line for the mistake, naming the closest option to one misspelt, and where help is."""
    guess = ""
    if mistake.message.startswith(_UNRECOGNIZED):
        flags = [option.flag for option in settings.OPTIONS] + ["--json", "--help", "--version"]
        words = mistake.message.removeprefix(_UNRECOGNIZED).split()
        close = [
            match
            for word in words
            if word.startswith("--")
            for match in difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.8)
        ]
        guess = f" (did you mean {' or '.join(close)}?)" if close else ""
    print(f"census-mcp: {mistake.message}{guess}", file=sys.stderr)
    print(f"Run `{mistake.prog} --help` for what it takes.", file=sys.stderr)
    return 2


_UNRECOGNIZED = "unrecognized arguments: "


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes a command's positionals in one run, so the JSON of `call TOOL --sandbox JSON`
    # comes back unrecognized: it is the arguments all the same.
    if args.command == "call" and args.arguments is None and extra[:1] and not extra[0].startswith("-"):
        args.arguments = extra.pop(0)
    if extra:
        prog = f"census-mcp {args.command}" if args.command else "census-mcp"
        raise UsageError(_UNRECOGNIZED + " ".join(extra), prog)
    serving = args.command is None
    config: settings.Settings | None = None
    try:
        config = settings.from_arguments(args)
        if args.command == "doctor":  # it reports the warnings among its lines
            from census_mcp.doctor import run_doctor

            return run_doctor(config, as_json=args.json)
        if args.command == "sandbox-reset":
            return _reset_sandbox(config)
        serving_http = serving and config.transport == "http"
        if args.command != "tools":
            config.require_credentials(serving_http=serving_http)
        # Said once, after what would stop the server: a refusal stays one line.
        for warning in config.warnings():
            print(f"census-mcp: warning: {warning}", file=sys.stderr)
        configure_logging(config)
        if serving_http:
            return _serve_http(config)

        from census_mcp.server import build_server

        server = build_server(config, audit_to_stderr=args.command != "call")
    except settings.SettingsError as exc:
        if serving and settings.requested_transport(args) != "http" and not sys.stdin.isatty():
            return _serve_unconfigured(str(exc), config)
        return _refuse(str(exc), as_json=args.json)
    if args.command == "tools":
        return _show_tools(server, args.name, as_json=args.json, flags=settings.given_flags(args))
    if args.command == "call":
        try:
            arguments = json.loads(args.arguments or "{}")
        except json.JSONDecodeError as exc:
            return _refuse(f"the arguments are not valid JSON ({exc.msg}).", as_json=args.json)
        if not isinstance(arguments, dict):
            return _refuse("the arguments must be a JSON object.", as_json=args.json)
        return _call(server, args.tool, arguments, as_json=args.json)
    server.run()
    return 0


def _serve_unconfigured(problem: str, config: settings.Settings | None) -> int:
    """Settings that cannot work, in a server a client launched (stdin is no terminal): said in one
    line on stderr, as always, and then served, so that the client lists the tools and every call
    tells the user what to set and where. Run by hand in a terminal, the server stops instead."""
    from census_mcp.server import build_unconfigured_server

    print(f"census-mcp: {problem}", file=sys.stderr, flush=True)
    build_unconfigured_server(problem, config).run()
    return 2


def _refuse(message: str, *, as_json: bool) -> int:
    """A mistake on the command line: one line on stderr, and with --json a document on stdout too,
    so that a pipeline into jq sees the error."""
    print(f"census-mcp: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"isError": True, "text": message, "structuredContent": None}, indent=2))
    return 2


def _serve_http(config: settings.Settings) -> int:
    """One process; for several workers, run census_mcp.asgi:create_app under uvicorn or gunicorn.

    The port is bound before anything says "serving", so a busy port is one clear line.
    """
    import uvicorn

    from census_mcp.http import create_http_app, uvicorn_limits

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((config.host, config.port))
    except OSError as exc:
        listener.close()
        busy = exc.errno == errno.EADDRINUSE
        why = "is in use by another program" if busy else f"cannot be bound ({exc.strerror})"
        print(
            f"census-mcp: port {config.port} on {config.host} {why}: pass --port (CENSUS_MCP_PORT) "
            "with a free one.",
            file=sys.stderr,
        )
        return 2
    # Listening before anything is said: a client that reads "serving" can connect at once.
    listener.listen(2048)
    app = create_http_app(config)
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, log_level=config.log_level.lower(), **uvicorn_limits(config))
    )
    print(f"census-mcp: serving MCP at http://{config.host}:{port}/mcp", file=sys.stderr, flush=True)
    server.run(sockets=[listener])
    return 0


def _reset_sandbox(config: settings.Settings) -> int:
    path = config.sandbox_state_path
    if path is None:
        print("census-mcp: the sandbox keeps nothing (--sandbox-state off): nothing to reset.")
    elif path.exists():
        path.unlink()
        print(f"census-mcp: the sandbox starts afresh on its next run ({path} removed).")
    else:
        print(f"census-mcp: the sandbox is already fresh (nothing kept at {path}).")
    return 0


def _show_tools(server: Any, name: str | None, *, as_json: bool, flags: list[str]) -> int:
    """The tools as a client lists them, or one described; `flags` are the options given, which its
    example call repeats (--sandbox, say), so that it runs against the same workspace."""
    import anyio

    from census_mcp.tools import why_not_offered

    listed = anyio.run(server.list_tools)
    if name is None:
        if as_json:
            tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]
            print(json.dumps({"tools": tools}, indent=2))
        else:
            for tool in listed:
                print(f"{tool.name:<26} {_kind(tool):<11} {(tool.description or '').splitlines()[0]}")
        return 0
    found = next((tool for tool in listed if tool.name == name), None)
    if found is None:
        print(f"census-mcp: {why_not_offered(name, server.census_settings)}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(found.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2))
    else:
        print(describe_tool(found, flags))
    return 0


def _kind(tool: Any) -> str:
    hints = tool.annotations
    if hints.read_only_hint:
        return "read-only"
    # The spec's default for a tool that writes is destructive.
    return "write" if hints.destructive_hint is False else "destructive"


def describe_tool(tool: Any, flags: Sequence[str] = ()) -> str:
    """A tool's arguments (name, type, required, default, description) and an example call, with
    the options given (`flags`) in it."""
    schema = tool.input_schema
    required = set(schema.get("required", []))
    lines = [f"{tool.name} ({_kind(tool)}): {tool.description}", "", "Arguments:"]
    rows = []
    for arg, prop in schema["properties"].items():
        kind = prop.get("type", "any")
        if "enum" in prop:
            kind += " (" + " | ".join(json.dumps(value) for value in prop["enum"]) + ")"
        need = (
            "required"
            if arg in required
            else f"default {json.dumps(prop['default'])}"
            if "default" in prop
            else "optional"
        )
        rows.append((arg, kind, need, prop.get("description", "")))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += [f"  {a:<{width[0]}}  {k:<{width[1]}}  {n:<{width[2]}}  {d}".rstrip() for a, k, n, d in rows]
    example = {
        arg: _example_value(arg, schema["properties"][arg]) for arg in schema["properties"] if arg in required
    }
    command = shlex.join(["census-mcp", *flags, "call", tool.name, json.dumps(example)])
    lines += ["", "Example:", f"  {command}"]
    return "\n".join(lines)


_EXAMPLES: dict[str, Any] = {
    "type": "snowflake",
    "credentials": {
        "account": "xy12345.us-east-1",
        "user": "CENSUS",
        "warehouse": "COMPUTE_WH",
        "password": "...",
    },
    "confirm_name": "Snowflake - analytics",
}


def _example_value(name: str, prop: dict[str, Any]) -> Any:
    """A plausible value for a required argument, for the example call."""
    if name in _EXAMPLES:
        return _EXAMPLES[name]
    if "enum" in prop:
        return prop["enum"][0]
    return {"integer": prop.get("minimum", 1), "boolean": True, "object": {}}.get(prop.get("type", ""), "...")


def _call(server: Any, tool: str, arguments: dict[str, Any], *, as_json: bool) -> int:
    import anyio
    from mcp import Client

    from census_mcp.server import result_text

    async def run() -> Any:
        async with Client(server) as client:
            return await client.call_tool(tool, arguments)

    result = anyio.run(run)
    text = result_text(result)
    if as_json:
        document = {
            "isError": bool(result.is_error),
            "text": text,
            "structuredContent": result.structured_content,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(text, file=sys.stderr if result.is_error else sys.stdout)
    return 1 if result.is_error else 0
