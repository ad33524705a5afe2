"""The sources app on the wire: clients that negotiated MCP Apps see it bound to list_sources and
get_source, over stdio and HTTP, in both protocol eras; a client that declared capabilities without
it sees exactly the server it saw before the app, byte for byte, and one the server cannot know (a
stateless HTTP request of the 2025-11-25 era) the same results, with `_meta.ui` it may ignore; the
document is self-contained and offers only what the server offers. (tests/test_app_browser.py runs it.)"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import TextResourceContents
from pydantic import SecretStr

from census_mcp.app import APP_URI, CALLS
from census_mcp.http import create_http_app
from census_mcp.server import build_server
from census_mcp.settings import Settings
from tests.conftest import Sandbox, serve_on_loopback
from tests.helpers import call, call_ok
from tests.test_contract import EXPECTED
from tests.test_real_clients import ROOT
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio

APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
MODES = ["legacy", "2026-07-28"]
HTTP_TOKEN = "app-test-7c1e"
# What the app may add to tools/list for a client the server cannot tell apart from an app host.
TOOLS_LIST_GROWTH = 0.02
APP_TOOLS = list(CALLS)
# When, and how freshly, a list was read: all that differs between two reads of the same list.
_FRESHNESS = re.compile(r'"fetched_at": ?"[^"]*"|(Read from Census at|From a list read) [^"\\]*')
_CONFIG = re.compile(r'<script type="application/json" id="census-mcp-config">(.*?)</script>')
_SCRIPTS = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL)
_STYLES = re.compile(r"<style\b[^>]*>(.*?)</style>", re.DOTALL)
_POLICY = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')


def _json(model: Any) -> Any:
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


def _compact_bytes(value: Any) -> int:
    """Bytes as compact JSON, as bench/run.py measures tools/list."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@asynccontextmanager
async def over_http(sandbox: Sandbox, mode: str, *, apps: bool, **settings: Any) -> AsyncIterator[Client]:
    """A client of census-mcp served over streamable HTTP (stateless, as deployed), with or without
    MCP Apps declared."""
    served = sandbox.settings(transport="http", auth_token=SecretStr(HTTP_TOKEN), **settings)
    with serve_on_loopback(create_http_app(served), lifespan="on") as root:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {HTTP_TOKEN}"}, timeout=30)
        transport = streamable_http_client(f"{root}/mcp", http_client=http)
        async with http, Client(transport, mode=mode, extensions=[APPS] if apps else []) as client:
            yield client


# Clients without the extension


class StdioSession:
    """census-mcp as a client launches it, spoken to in raw JSON-RPC lines, one era per process."""

    def __init__(self, sandbox: Sandbox, *flags: str) -> None:
        environment = _environment(
            CENSUS_API_TOKEN=sandbox.token,
            CENSUS_API_VERSION=sandbox.api_version,
            CENSUS_API_BASE_URL=sandbox.base_url,
        )
        self.process = subprocess.Popen(
            [_console_script(), *flags],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def send(self, message: dict[str, Any]) -> str | None:
        """Send one message; for a request, the exact line that answers it."""
        assert self.process.stdin
        assert self.process.stdout
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline() if "id" in message else None

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)


def _conversation(era: str) -> Iterator[dict[str, Any]]:
    """What a client without the extension says first: list everything, call the bound tools, and
    try the app-only one."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params: dict[str, Any] = {"_meta": envelope} if era == "modern" else {}
    if era == "modern":
        yield {"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": params}
    else:
        client = {"name": "raw", "version": "0"}
        start = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}
        yield {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": start}
        yield {"jsonrpc": "2.0", "method": "notifications/initialized"}
    calls = [
        ("list_sources", {"test_status": "failed"}),
        ("get_source", {"source_id": 3}),
        ("list_sources_sorted", {"sort_by": "name"}),
    ]
    yield {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}
    yield {"jsonrpc": "2.0", "id": 2, "method": "resources/list", "params": params}
    for number, (name, arguments) in enumerate(calls, start=3):
        call_params = params | {"name": name, "arguments": arguments}
        yield {"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": call_params}


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_other_clients_get_todays_server_byte_for_byte(sandbox: Sandbox, era: str) -> None:
    """Over stdio, against the same workspace, the server with the app answers a client that did
    not negotiate it with the very lines the server without it (--no-app) does."""
    with_app, without_app = StdioSession(sandbox), StdioSession(sandbox, "--no-app")
    try:
        answers = [
            (message, with_app.send(message), without_app.send(message)) for message in _conversation(era)
        ]
    finally:
        with_app.close()
        without_app.close()
    for message, line, today in answers:
        if line is None or today is None:
            continue
        if message["method"] == "server/discover":
            # The server says it supports MCP Apps: the one difference, and how clients learn of it.
            offered = json.loads(line)["result"]
            assert offered["capabilities"].pop("extensions") == {EXTENSION_ID: {}}
            assert offered == json.loads(today)["result"]
            continue
        if message.get("params", {}).get("name") == "list_sources":
            # Each process read the list at its own moment.
            line, today = _FRESHNESS.sub("", line), _FRESHNESS.sub("", today)
        assert line == today, message["method"]
    by_id = {message["id"]: json.loads(line) for message, line, _ in answers if line}
    assert [tool["name"] for tool in by_id[1]["result"]["tools"]] == EXPECTED
    assert '_meta"' not in json.dumps(by_id[1]["result"]["tools"])
    assert by_id[2]["result"]["resources"] == []
    assert by_id[5]["result"]["isError"] is True
    assert by_id[5]["result"]["content"][0]["text"].startswith("No tool has that name.")


# Clients with the extension


@pytest.mark.parametrize("mode", MODES)
async def test_app_clients_see_the_app_bound_to_list_and_get_source(sandbox: Sandbox, mode: str) -> None:
    server = build_server(sandbox.settings())
    async with Client(server, mode=mode) as plain, Client(server, mode=mode, extensions=[APPS]) as app:
        seen = {tool.name: _json(tool) for tool in (await app.list_tools()).tools}
        today = {tool.name: _json(tool) for tool in (await plain.list_tools()).tools}
        assert list(seen) == [*EXPECTED, "list_sources_sorted"]
        assert seen["list_sources"].pop("_meta") == {"ui": {"resourceUri": APP_URI}}
        assert seen["get_source"].pop("_meta") == {"ui": {"resourceUri": APP_URI}}
        # The app-only tool: hosts keep it from the model, which it would only cost tokens.
        app_only = seen.pop("list_sources_sorted")
        assert app_only["_meta"] == {"ui": {"visibility": ["app"]}}
        assert all(isinstance(kind, str) for kind in _types(app_only["inputSchema"]))  # portable
        assert seen == today

        [resource] = (await app.list_resources()).resources
        assert (str(resource.uri), resource.mime_type) == (APP_URI, APP_MIME_TYPE)
        [content] = (await app.read_resource(APP_URI)).contents
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == APP_MIME_TYPE
        assert content.meta is not None
        assert content.meta["ui"]["csp"] == {
            "connectDomains": [],
            "resourceDomains": [],
            "frameDomains": [],
            "baseUriDomains": [],
        }

        # The app reads what the model reads.
        reads: list[tuple[str, dict[str, Any]]] = [
            ("list_sources", {"type": "snowflake"}),
            ("get_source", {"source_id": 5}),
        ]
        for name, arguments in reads:
            shown, given = await call_ok(app, name, arguments), await call_ok(plain, name, arguments)
            assert _FRESHNESS.sub("", shown.model_dump_json()) == _FRESHNESS.sub("", given.model_dump_json())


@pytest.mark.parametrize("mode", MODES)
async def test_over_http_app_clients_find_the_app_in_both_eras(sandbox: Sandbox, mode: str) -> None:
    """Stateless HTTP forgets what a 2025-11-25 client declared at initialize: such a client is
    offered the app all the same (the app-only tool callable, not listed); a 2026-07-28 client
    declares it on every request and sees all of it."""
    async with over_http(sandbox, mode, apps=True) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for bound in ("list_sources", "get_source"):
            assert tools[bound].meta == {"ui": {"resourceUri": APP_URI}}
        assert ("list_sources_sorted" in tools) is (mode != "legacy")
        [resource] = (await client.list_resources()).resources
        assert (str(resource.uri), resource.mime_type) == (APP_URI, APP_MIME_TYPE)
        [content] = (await client.read_resource(APP_URI)).contents
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == APP_MIME_TYPE
        assert content.text.startswith("<!doctype html>")
        assert content.meta is not None
        assert content.meta["ui"]["csp"]["connectDomains"] == []
        # What the app calls itself works in both eras.
        page = await call_ok(client, "list_sources_sorted", {"sort_by": "name", "limit": 3})
        assert page.structured_content is not None
        names = [source["name"].casefold() for source in page.structured_content["sources"]]
        assert names == sorted(names)


@pytest.mark.parametrize("mode", MODES)
async def test_over_http_other_clients_get_the_same_results_and_a_tools_list_within_2_percent(
    sandbox: Sandbox, mode: str
) -> None:
    """A client without the extension, against the server with the app and against --no-app: the
    same tool results, text and structured; the same tools/list in the 2026-07-28 era, where it
    declares its capabilities on each request, and in the 2025-11-25 era one that differs only by
    the `_meta.ui` of the two bound tools."""
    seen: dict[bool, tuple[list[dict[str, Any]], list[Any], list[str]]] = {}
    reads: list[tuple[str, dict[str, Any]]] = [
        ("list_sources", {"test_status": "failed", "limit": 5}),
        ("get_source", {"source_id": 3}),
        ("list_source_types", {}),
    ]
    for app in (True, False):
        async with over_http(sandbox, mode, apps=False, app=app) as client:
            tools = [_json(tool) for tool in (await client.list_tools()).tools]
            results = [_FRESHNESS.sub("", (await call(client, *read)).model_dump_json()) for read in reads]
            sorted_list = await call(client, "list_sources_sorted", {"sort_by": "name"})
            resources = [str(resource.uri) for resource in (await client.list_resources()).resources]
            seen[app] = tools, results, resources
            # The app-only tool is never listed to such a client; only the app may call it.
            assert sorted_list.is_error is (mode != "legacy" or not app)
    (with_app, results, resources), (today, results_today, _) = seen[True], seen[False]
    assert results == results_today
    size, size_today = _compact_bytes(with_app), _compact_bytes(today)
    if mode == "legacy":
        assert resources == [APP_URI]
        assert size_today < size <= size_today * (1 + TOOLS_LIST_GROWTH)
        bound = {"list_sources", "get_source"}
        assert [tool["name"] for tool in with_app] == EXPECTED
        for tool, before in zip(with_app, today, strict=True):
            meta = tool.pop("_meta", None)
            assert meta == ({"ui": {"resourceUri": APP_URI}} if tool["name"] in bound else None)
            assert tool == before
    else:
        assert resources == []
        assert with_app == today


def _types(schema: Any) -> Iterator[Any]:
    """Every `type` in a JSON schema, at any depth."""
    if isinstance(schema, dict):
        if "type" in schema:
            yield schema["type"]
        for key, value in schema.items():
            yield from _types(list(value.values()) if key in ("properties", "$defs") else value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _types(item)


def _source_ids(sandbox: Sandbox, order: Any, **where: Any) -> list[int]:
    sources = [
        source
        for source in sandbox.workspace.sources.values()
        if all(source[key] == value for key, value in where.items())
    ]
    return [source["id"] for source in sorted(sources, key=order)]


def _by_name(source: dict[str, Any]) -> tuple[str, int]:
    return source["name"].casefold(), source["id"]


_STATUS = {False: 0, None: 1, True: 2}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param({"sort_by": "name"}, lambda sb: _source_ids(sb, _by_name), id="name"),
        pytest.param(
            {"sort_by": "name", "order": "desc", "type": "snowflake"},
            lambda sb: _source_ids(sb, _by_name, type="snowflake")[::-1],
            id="name-desc-snowflake",
        ),
        pytest.param(
            {"sort_by": "test_status"},
            lambda sb: _source_ids(sb, lambda s: (_STATUS[s["last_test_succeeded"]], *_by_name(s))),
            id="failed-first",
        ),
        pytest.param(
            {"sort_by": "type", "test_status": "passed"},
            lambda sb: _source_ids(sb, lambda s: (s["type"], *_by_name(s)), last_test_succeeded=True),
            id="type-of-passed",
        ),
        pytest.param(
            {"sort_by": "last_tested_at", "order": "desc"},
            lambda sb: _source_ids(sb, lambda s: (s["last_tested_at"] is None, _by_name(s))),
            id="tested-latest-first-untested-last",
        ),
    ],
)
async def test_the_app_only_sort_orders_every_match_before_paging(
    sandbox: Sandbox, arguments: dict[str, Any], expected: Any
) -> None:
    async with Client(build_server(sandbox.settings()), extensions=[APPS]) as app:
        ids: list[int] = []
        offset: int | None = 0
        while offset is not None:
            result = await call_ok(app, "list_sources_sorted", arguments | {"limit": 7, "offset": offset})
            page = result.structured_content
            assert page is not None
            ids += [source["id"] for source in page["sources"]]
            offset = page["next_offset"]
    wanted = expected(sandbox)
    if arguments["sort_by"] == "last_tested_at":
        # Latest test first; ties and the untested tail checked by membership.
        tested = [i for i in wanted if sandbox.workspace.sources[i]["last_tested_at"]]
        times = [sandbox.workspace.sources[i]["last_tested_at"] for i in ids[: len(tested)]]
        assert times == sorted(times, reverse=True)
        assert set(ids[len(tested) :]) == set(wanted[len(tested) :])
    else:
        assert ids == wanted
    # One read of Census served every page.
    assert sum(request.path.endswith("/sources") for request in sandbox.workspace.requests) <= 2


async def test_the_app_only_sort_takes_the_name_filter_refresh_and_an_ascending_default(
    sandbox: Sandbox,
) -> None:
    """list_sources_sorted narrows by name as list_sources does, reads Census again when asked to,
    and says, as it does, that it sorts A-Z unless told otherwise."""
    async with Client(build_server(sandbox.settings()), extensions=[APPS]) as app:
        [tool] = [tool for tool in (await app.list_tools()).tools if tool.name == "list_sources_sorted"]
        assert tool.input_schema["properties"]["order"]["default"] == "asc"
        arguments = {"sort_by": "name", "name_contains": "PROD", "limit": 100}
        page = (await call_ok(app, "list_sources_sorted", arguments)).structured_content
        assert page is not None
        named = [
            s
            for s in sandbox.workspace.sources.values()
            if "prod" in f"{s['name']} {s['label'] or ''}".casefold()
        ]
        assert 0 < page["total"] == len(named) < len(sandbox.workspace.sources)
        assert [source["id"] for source in page["sources"]] == [s["id"] for s in sorted(named, key=_by_name)]
        reads = sum(request.path.endswith("/sources") for request in sandbox.workspace.requests)
        await call_ok(app, "list_sources_sorted", arguments)
        assert sum(request.path.endswith("/sources") for request in sandbox.workspace.requests) == reads
        await call_ok(app, "list_sources_sorted", arguments | {"refresh": True})
        assert sum(request.path.endswith("/sources") for request in sandbox.workspace.requests) > reads


# What the app offers


def _app_config(html: str) -> dict[str, Any]:
    match = _CONFIG.search(html)
    assert match
    config: dict[str, Any] = json.loads(match.group(1))
    return config


async def _served(settings: Settings) -> tuple[list[str], str | None, dict[str, Any]]:
    """The tools an app client sees, the app's document (None without one), and server capabilities."""
    async with Client(build_server(settings), extensions=[APPS]) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        resources = (await client.list_resources()).resources
        html = None
        if resources:
            [content] = (await client.read_resource(APP_URI)).contents
            assert isinstance(content, TextResourceContents)
            html = content.text
        capabilities = _json(client.server_capabilities) if client.server_capabilities else {}
        return tools, html, capabilities


@pytest.mark.parametrize(
    ("settings", "calls"),
    [
        pytest.param({}, APP_TOOLS, id="everything"),
        pytest.param(
            {"read_only": True},
            [tool for tool in APP_TOOLS if tool != "refresh_source_tables"],
            id="read-only",
        ),
        pytest.param(
            {"exclude_tools": ("refresh_source_tables", "list_sources_sorted", "list_source_types")},
            ["list_sources", "get_source", "get_refresh_tables_status"],
            id="excluded",
        ),
        pytest.param({"tools": ("list_sources",)}, ["list_sources", "list_sources_sorted"], id="allow-list"),
    ],
)
async def test_the_app_calls_only_tools_the_server_offers(settings: dict[str, Any], calls: list[str]) -> None:
    """The app hides what would call a tool the server does not offer: the refresh button when
    read-only or excluded, column sorts without the sort tool, type labels without the catalogue."""
    tools, html, capabilities = await _served(Settings(sandbox=True, **settings))
    assert html is not None
    assert _app_config(html) == {"tools": calls}
    assert set(calls) <= set(tools)
    assert capabilities["extensions"] == {EXTENSION_ID: {}}


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"app": False}, id="no-app"),
        pytest.param({"exclude_tools": ("list_sources",)}, id="no-list_sources"),
    ],
)
async def test_without_the_app_even_app_clients_see_todays_server(settings: dict[str, Any]) -> None:
    tools, html, capabilities = await _served(Settings(sandbox=True, **settings))
    assert html is None
    assert "list_sources_sorted" not in tools
    assert "extensions" not in capabilities
    async with Client(build_server(Settings(sandbox=True, **settings)), extensions=[APPS]) as client:
        assert all(tool.meta is None for tool in (await client.list_tools()).tools)
        refused = await call(client, "list_sources_sorted", {"sort_by": "name"})
        assert refused.is_error


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


async def test_the_app_is_one_document_that_needs_no_network() -> None:
    _, html, _ = await _served(Settings(sandbox=True))
    assert html is not None
    # Nothing to fetch: no external script, style sheet, font, image, frame or base.
    assert not re.search(r"<(link|img|iframe|base|object|embed)\b|\bsrc=|\bhref=", html, re.IGNORECASE)
    scripts, [style] = _SCRIPTS.findall(html), _STYLES.findall(html)
    assert len(scripts) == 3  # config (data), bridge, app
    assert not re.search(r"url\(|@import|@font-face", style)
    # Its own policy lets exactly its two scripts and its style run, and reach nothing.
    [policy] = _POLICY.findall(html)
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'none'"
    assert directives["font-src"] == "https: data:"  # the host's fonts, named by its own rules alone
    assert directives["script-src"].split() == [_hash(scripts[1]), _hash(scripts[2])]
    assert directives["style-src"] == _hash(style)
    # The app's own code renders Census text as text: no markup sinks, no network calls.
    code = scripts[2]
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "fetch(",
        "XMLHttpRequest",
    ):
        assert sink not in code
    assert "globalThis.McpExtApps=Object.freeze({" in scripts[1]


def test_the_vendored_bridge_is_the_release_package_json_pins() -> None:
    """census_mcp/app/vendor/ holds ext-apps' app-with-deps build, unchanged, at the version
    package.json pins; scripts/vendor-ext-apps updates it."""
    package = ROOT / "node_modules" / "@modelcontextprotocol" / "ext-apps"
    if not package.is_dir():
        pytest.fail(f"{package} is missing: run `npm ci` in {ROOT} (scripts/check does)")
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"][
        "@modelcontextprotocol/ext-apps"
    ]
    assert json.loads((package / "package.json").read_text())["version"] == pinned
    vendor = ROOT / "census_mcp" / "app" / "vendor"
    assert (vendor / "app-with-deps.js").read_bytes() == (
        package / "dist" / "src" / "app-with-deps.js"
    ).read_bytes()
    assert (vendor / "LICENSE").read_bytes() == (package / "LICENSE").read_bytes()
