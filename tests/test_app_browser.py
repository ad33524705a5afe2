"""The sources app in a real browser, in a real host: headless Chromium, driven by Playwright, loads a
host page built on ext-apps' AppBridge as its basic-host example is (the view in a sandbox proxy
on a second origin, under the CSP taken from the resource's `_meta.ui.csp`), and the host reaches
census-mcp through the official TypeScript client: over streamable HTTP in the client's default
era (2025-11-25) and in 2026-07-28, and over stdio through a small bridge (the page's messages
written to the server's stdin, its stdout read back). census-mcp reads a sandbox workspace over
loopback, whose fault options make Census fail.

They run on API v2 alone: the app shows what the tools return, which the other tests prove equal on
both versions, and v2 is the one with groups, so it renders every chart. axe-core checks every state
the tests reach; the screenshots land in build/app-screenshots/ for CI to keep.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from pydantic import SecretStr

from census_mcp.app import APP_URI
from census_mcp.http import create_http_app
from census_mcp.redaction import MASK
from census_mcp.sandbox.faults import NO_FAULTS, FaultConfig
from census_mcp.server import build_server
from census_mcp.settings import Settings
from tests.conftest import Sandbox, running_sandbox, serve_on_loopback
from tests.helpers import call_ok
from tests.test_real_clients import ROOT, node_tool
from tests.test_stdio import _console_script, _environment

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is missing: pip install -e '.[test]'"
)
expect, async_playwright = playwright_api.expect, playwright_api.async_playwright

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("browser")]  # one Chromium, one bundle

SHOTS = ROOT / "build" / "app-screenshots"
HOST_FILES = ROOT / "tests" / "app_host"
TOKEN = "browser-host-5f2a"
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_ERROR = "<script>alert(2)</script> and <b>not bold</b>"
WIDE, NARROW = 1280, 400
INLINE_MAX_HEIGHT = 700
# The app's own colours when the host gives no style variables (sources.html, --bg).
BACKGROUNDS = {"light": "rgb(255, 255, 255)", "dark": "rgb(31, 31, 30)"}
BUNDLE = ("--format", "esm", "--platform", "browser", "--minify")
# The three ways the host reaches census-mcp: HTTP in the client's default era and in 2026-07-28, stdio.
CONNECTIONS = ["http", "http-2026", "stdio"]
DOWN = FaultConfig(rate=1.0, kinds=("502", "503"))
FIRST_PAGE = {"limit": 25, "offset": 0, "order": "desc"}


def chromium() -> str:
    """Debian's Chromium (or CENSUS_MCP_CHROMIUM); without one these tests are skipped."""
    candidates = [
        os.environ.get("CENSUS_MCP_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/lib/chromium/chromium",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing = (
        "No Chromium found for the browser tests: install it with `sudo apt-get install -y chromium` "
        "(Debian, Ubuntu; .ci/run does), or set CENSUS_MCP_CHROMIUM to a Chromium binary."
    )
    if os.environ.get("CI"):
        pytest.fail(missing)  # CI installs it, so a skip there would hide a broken setup
    pytest.skip(missing)


@pytest.fixture(scope="session")
def host_script(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/app_host/host.mjs with ext-apps' app-bridge and the TypeScript client, bundled for the
    browser by rolldown once per run (about a second)."""
    out = tmp_path_factory.mktemp("app-host") / "host.js"
    done = subprocess.run(
        [node_tool("rolldown"), str(HOST_FILES / "host.mjs"), "--file", str(out), *BUNDLE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text()


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core's browser build, as package.json pins it."""
    axe = ROOT / "node_modules" / "axe-core" / "axe.min.js"
    if not axe.is_file():
        pytest.fail(f"{axe} is missing: run `npm ci` in {ROOT} (scripts/check does)")
    return axe.read_text()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that one browser and one server serve every test here."""
    return "asyncio"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the module; each test gets a fresh context of its own."""
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield launched
        await launched.close()


def _recent(sources: dict[int, dict[str, Any]]) -> None:
    """The seeded tests date from early 2025: move them, as a block, to end an hour ago, as in a live
    workspace, so that their ages read as they would."""
    tested = [datetime.fromisoformat(s["last_tested_at"]) for s in sources.values() if s["last_tested_at"]]
    shift = datetime.now(UTC) - timedelta(hours=1) - max(tested)
    for source in sources.values():
        if source["last_tested_at"]:
            source["last_tested_at"] = _stamp(datetime.fromisoformat(source["last_tested_at"]) + shift)


def _stamp(moment: datetime) -> str:
    """A time as Census writes one."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Served:
    """census-mcp over HTTP in front of a sandbox workspace, and the settings it runs with."""

    sandbox: Sandbox
    settings: Settings
    url: str

    @property
    def origin(self) -> str:
        return self.url.removesuffix("/mcp")

    @property
    def proxy_origin(self) -> str:
        """The sandbox proxy's origin: the same server by another name, so another origin."""
        return self.origin.replace("127.0.0.1", "localhost")

    def environment(self) -> dict[str, str]:
        """The same settings for `census-mcp` over stdio."""
        return _environment(
            CENSUS_API_TOKEN=self.sandbox.token,
            CENSUS_API_VERSION=self.sandbox.api_version,
            CENSUS_API_BASE_URL=self.sandbox.base_url,
            CENSUS_GROUP_ID=self.sandbox.group_id or "",
            CENSUS_MCP_CACHE_SECONDS=str(self.settings.cache_seconds),
            CENSUS_MCP_MAX_ATTEMPTS=str(self.settings.max_attempts),
        )


@contextmanager
def serving(size: int, **settings: Any) -> Iterator[Served]:
    with running_sandbox("v2", size=size, refresh_seconds=0.5) as sandbox:
        _recent(sandbox.workspace.sources)
        served = sandbox.settings(transport="http", auth_token=SecretStr(TOKEN), **settings)
        with serve_on_loopback(create_http_app(served), lifespan="on") as root:
            yield Served(sandbox, served, f"{root}/mcp")


@pytest.fixture(scope="module")
def workspace() -> Iterator[Served]:
    """1,000 sources; the list cache off, so that every call reaches Census."""
    with serving(1000, cache_seconds=0) as served:
        yield served


@pytest.fixture(scope="module")
def flaky() -> Iterator[Served]:
    """60 sources, one Census request a list, two attempts each: with 60% of requests failing, about
    a third of the calls fail, each within a second."""
    with serving(60, cache_seconds=0, max_attempts=2) as served:
        yield served


@pytest.fixture(autouse=True)
def _census_recovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did to Census, the next one finds it well."""
    yield
    for name in ("workspace", "flaky"):
        if name in request.fixturenames:
            request.getfixturevalue(name).sandbox.workspace.faults = NO_FAULTS


@dataclass
class Host:
    """The host page, the app inside it, and what happened: the tool calls the host sent, errors."""

    page: Any
    served: Served
    expected: Client
    """census-mcp in-process on the same workspace: what the app should show."""
    axe: str
    connected: dict[str, Any] = field(default_factory=dict)
    """The negotiated protocol version and the tools the host's client listed."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    called: anyio.Event = field(default_factory=anyio.Event)
    """Set, then replaced, at each tool call."""
    awaited: int = 0
    """How many calls a test has waited for: the next wait looks at the calls after them."""

    def record(self, message: dict[str, Any]) -> None:
        if message.get("method") == "tools/call":
            params = message["params"]
            self.calls.append((params["name"], params.get("arguments", {})))
            called, self.called = self.called, anyio.Event()
            called.set()

    @property
    def app(self) -> Any:
        """The view: the inner frame of the sandbox proxy."""
        return self.page.frame_locator("iframe").frame_locator("iframe")

    @property
    def app_frame(self) -> Any:
        [frame] = [
            frame for frame in self.page.frames if frame.parent_frame and frame.parent_frame.parent_frame
        ]
        return frame

    async def open(
        self,
        tool: str = "list_sources",
        arguments: dict[str, Any] | None = None,
        *,
        features: dict[str, bool] | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        """What a host does when the model called `tool`: call it, show the app, hand it the result."""
        offered = {"message": True, "modelContext": True, "fullscreen": True} | (features or {})
        await self.page.evaluate(
            "options => window.host.openApp(options)",
            {
                "tool": tool,
                "arguments": arguments or {},
                "proxyUrl": f"{self.served.proxy_origin}/host-test/sandbox.html",
                "context": {"theme": "light", "locale": "en-US", "timeZone": "UTC", **(context or {})},
                "features": offered,
            },
        )
        await expect(self.app.locator("#app")).to_have_attribute("aria-busy", "false")

    async def row_ids(self) -> list[int]:
        ids: list[int] = await self.app.locator("tbody tr[data-id]").evaluate_all(
            "rows => rows.map(row => Number(row.dataset.id))"
        )
        return ids

    async def called_with(self, tool: str, arguments: dict[str, Any]) -> None:
        """Wait until the app calls `tool` with `arguments` (among the calls it makes on its own)."""
        with anyio.fail_after(10):
            while (tool, arguments) not in self.calls[self.awaited :]:
                await self.called.wait()
        self.awaited += self.calls[self.awaited :].index((tool, arguments)) + 1

    async def shows_page_of(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Wait until the app has called `tool` with `arguments` and shows the page it returned."""
        await self.called_with(tool, arguments)
        await expect(self.app.locator("#app")).to_have_attribute("aria-busy", "false")
        expected: dict[str, Any] | None = (await call_ok(self.expected, tool, arguments)).structured_content
        assert expected is not None
        ids = [source["id"] for source in expected["sources"]]
        await expect(self.app.locator("tbody tr[data-id]")).to_have_count(len(ids))
        assert await self.row_ids() == ids
        return expected

    async def bars(self, chart: str) -> list[list[Any]]:
        """A chart's bars: [value, count] each."""
        bars: list[list[Any]] = await self.app.locator(f"{chart} .bar").evaluate_all(
            "bars => bars.map(b => [b.dataset.value, Number(b.dataset.count)])"
        )
        return bars

    async def seen(self) -> dict[str, Any]:
        """What the host received from the view: messages, model-context updates, display modes."""
        seen: dict[str, Any] = await self.page.evaluate("JSON.parse(JSON.stringify(window.host.seen))")
        return seen

    async def rows_and_summary(self) -> tuple[list[int], str, str]:
        summary = (await self.app.locator("#summary").inner_text()).split(" · read from Census")[0]
        return await self.row_ids(), summary, await self.app.locator("#range").inner_text()

    async def assert_plain_problem(self) -> None:
        """The error the chat user reads says what to do, and nothing of the server's internals."""
        text = await self.app.locator("#problem").inner_text()
        await expect(self.app.locator("#retry")).to_be_visible()
        for internal in ("http", "CENSUS_", "--", "/api/", "127.0.0.1", "list_sources", "get_source"):
            assert internal not in text, text
        assert "retry" in text.lower()

    async def refreshes_tables(self, source_id: int, detail: dict[str, Any]) -> None:
        """Refresh tables, followed as the app shows it: steps, each done in turn."""
        app = self.app
        steps = app.locator("#r-steps li")
        await app.locator("#refresh").click()
        await expect(app.locator("#refresh")).to_be_disabled()
        await expect(steps.nth(0)).to_have_attribute("data-state", "done")
        await expect(steps.nth(1)).to_have_attribute("data-state", "current")
        await expect(app.locator("#r-status")).to_contain_text("Census is reading the tables")
        tables = detail["data_sources"]["by_kind"]["table"]
        await expect(steps.nth(2)).to_have_text(f"Done: {tables} tables")
        assert await steps.evaluate_all("steps => steps.map(step => step.dataset.state)") == ["done"] * 3
        await expect(app.locator("#refresh")).to_be_enabled()
        started = self.calls.index(("refresh_source_tables", {"source_id": source_id}))
        after = [name for name, _ in self.calls[started + 1 :]]
        # Census was asked how the job stood until it was done, then the source read afresh.
        assert after[-1] == "get_source"
        assert set(after[:-1]) == {"get_refresh_tables_status"}
        assert len(after) >= 2
        await self.accessible("tables refreshed")

    async def agrees_with_its_controls(self, everything: list[dict[str, Any]]) -> None:
        """The rows, count and range are `everything` (the workspace, newest first) filtered and
        paged as the controls say."""
        controls = await self.app_frame.evaluate(
            """() => Object.fromEntries(["f-type", "f-status", "f-group", "page-size", "page"]
                .map(id => [id, document.getElementById(id).value]))"""
        )
        limit, page = int(controls["page-size"]), int(controls["page"])
        matching = [
            source
            for source in everything
            if controls["f-type"] in ("", source["type"])
            and controls["f-status"] in ("", _status(source))
            and controls["f-group"] in ("", source.get("group_id"))
        ]
        offset = (page - 1) * limit
        ids = [source["id"] for source in matching[offset : offset + limit]]
        assert await self.row_ids() == ids, controls
        await expect(self.app.locator("#summary")).to_contain_text(
            f"{len(matching)} of {len(everything)} sources"
        )
        shown = (
            f"{offset + 1}\u2013{offset + len(ids)} of {len(matching)}" if ids else f"0 of {len(matching)}"
        )
        await expect(self.app.locator("#range")).to_have_text(shown)

    async def accessible(self, state: str) -> None:
        """axe-core, run inside the view: no violation of any rule it applies by default."""
        found: list[dict[str, Any]] = await self.app_frame.evaluate(AXE_RUN.replace("AXE_SOURCE", self.axe))
        assert found == [], f"{state}: {json.dumps(found, indent=1)}"

    async def screenshot(self, name: str) -> None:
        """The app once its height has settled: the viewport is made as tall as the view, since
        Chromium leaves a frame's content below the viewport unpainted."""
        shown = await self.settled_height()
        width = self.page.viewport_size["width"]
        await self.page.set_viewport_size({"width": width, "height": max(shown, 100)})
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(
            path=SHOTS / f"{name}.png", clip={"x": 0, "y": 0, "width": width, "height": shown}
        )

    async def settled_height(self) -> int:
        """The iframe's height once it matches the view's document."""
        with anyio.fail_after(10):
            while True:
                wanted = await self.app_frame.evaluate(
                    "Math.ceil(document.documentElement.getBoundingClientRect().height)"
                )
                shown: int = await self.page.evaluate("document.querySelector('iframe').clientHeight")
                if wanted == shown:
                    return shown
                await anyio.sleep(0.05)

    async def set_theme(self, theme: str) -> None:
        await self.page.evaluate("theme => window.host.setHostContext({ theme })", theme)
        await expect(self.app.locator("body")).to_have_css("background-color", BACKGROUNDS[theme])

    def assert_clean(self) -> None:
        """No script error, no CSP violation, and no request but the host's files and its calls to
        census-mcp: the app itself fetched nothing."""
        assert self.errors == []
        allowed = {
            f"{self.served.origin}/host-test/host.html",
            f"{self.served.origin}/host-test/host.js",
            f"{self.served.proxy_origin}/host-test/sandbox.html",
            self.served.url,
        }
        assert {url.split("?")[0] for url in self.requests} <= allowed


def _status(source: dict[str, Any]) -> str:
    return {True: "passed", False: "failed", None: "untested"}[source["last_test_succeeded"]]


# Runs axe-core's own build in the view's page; what it finds, in short.
AXE_RUN = """
(async () => {
AXE_SOURCE
;const result = await axe.run(document, { resultTypes: ["violations"] });
return result.violations.map(
  v => ({ id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(" ")) }));
})()
"""


def csp_header(csp: dict[str, list[str]]) -> str:
    """The sandbox proxy's policy for a resource's `_meta.ui.csp`, as basic-host builds one: the view
    may reach what its resource declared, and nothing else."""
    resources = " ".join(csp.get("resourceDomains", []))
    frames = " ".join(csp.get("frameDomains", [])) or "'none'"
    bases = " ".join(csp.get("baseUriDomains", [])) or "'none'"
    return "; ".join(
        (
            "default-src 'self' 'unsafe-inline'",
            f"script-src 'self' 'unsafe-inline' {resources}".strip(),
            f"style-src 'self' 'unsafe-inline' {resources}".strip(),
            f"img-src 'self' data: {resources}".strip(),
            f"font-src 'self' data: {resources}".strip(),
            f"connect-src 'self' {' '.join(csp.get('connectDomains', []))}".strip(),
            f"frame-src {frames}",
            "object-src 'none'",
            f"base-uri {bases}",
        )
    )


async def _serve_host_files(host: Host, script: str) -> None:
    """The host page and its script at census-mcp's origin (so the client's requests are its own),
    the sandbox proxy at the second origin with its CSP header: served by the test, nothing leaves
    the machine."""
    page, served = host.page, host.served

    def on_console(message: Any) -> None:
        # CSP violations are reported here too; failed loads are judged by their responses.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            host.errors.append(message.text)

    def on_response(response: Any) -> None:
        # A stateless server offers no stream to GET (405), and the client expects as much.
        expected = response.url == served.url and response.request.method == "GET" and response.status == 405
        if response.status >= 400 and not expected:
            host.errors.append(f"{response.request.method} {response.url}: {response.status}")

    def on_request(request: Any) -> None:
        host.requests.append(request.url)
        if request.url == served.url and request.method == "POST" and request.post_data:
            host.record(json.loads(request.post_data))

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: host.errors.append(str(error)))
    page.on("dialog", lambda dialog: host.errors.append(f"dialog: {dialog.message}"))
    page.on("request", on_request)

    async def host_file(route: Any) -> None:
        name = urlsplit(route.request.url).path.removeprefix("/host-test/")
        body, kind = {
            "host.html": ((HOST_FILES / "host.html").read_text(), "text/html"),
            "host.js": (script, "text/javascript"),
        }.get(name, ("", "text/plain"))
        await route.fulfill(status=200 if body else 404, body=body, content_type=kind)

    async def proxy_file(route: Any) -> None:
        query = parse_qs(urlsplit(route.request.url).query)
        csp = json.loads(query.get("csp", ["{}"])[0])
        await route.fulfill(
            status=200,
            body=(HOST_FILES / "sandbox.html").read_text(),
            content_type="text/html",
            headers={"Content-Security-Policy": csp_header(csp)},
        )

    await page.route(f"{served.origin}/host-test/**", host_file)
    await page.route(f"{served.proxy_origin}/host-test/**", proxy_file)


@asynccontextmanager
async def _stdio_bridge(page: Any, served: Served, host: Host) -> AsyncIterator[None]:
    """census-mcp over stdio, its pipes joined to the page's transport: each line the page sends is
    written to its stdin, each line it prints is handed back to the page."""
    process: Process = await anyio.open_process(
        [_console_script()], env=served.environment(), stderr=subprocess.DEVNULL
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout

    async def send(line: str) -> None:
        host.record(json.loads(line))
        await stdin.send(line.encode() + b"\n")

    async def relay() -> None:
        buffered = b""
        async for chunk in stdout:
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                await page.evaluate("line => window.host.stdioReceive(line)", line.decode())

    await page.expose_function("stdioSend", send)
    async with process, anyio.create_task_group() as tasks:
        tasks.start_soon(relay)
        try:
            yield
        finally:
            await stdin.aclose()
            with anyio.move_on_after(10):
                await process.wait()
            tasks.cancel_scope.cancel()


@asynccontextmanager
async def _joined(page: Any, served: Served, host: Host, connection: str) -> AsyncIterator[None]:
    """The stdio bridge, when the host reaches census-mcp over stdio."""
    if connection != "stdio":
        yield
        return
    async with _stdio_bridge(page, served, host):
        yield


@asynccontextmanager
async def hosted(
    browser: Any,
    served: Served,
    script: str,
    axe: str,
    *,
    connection: str = "http",
    width: int = WIDE,
) -> AsyncIterator[Host]:
    """A host page `width` px wide, its client connected to census-mcp as `connection` says."""
    context = await browser.new_context(viewport={"width": width, "height": 800})
    try:
        async with Client(build_server(served.settings), extensions=[APPS]) as expected:
            page = await context.new_page()
            host = Host(page=page, served=served, expected=expected, axe=axe)
            await _serve_host_files(host, script)
            await page.goto(f"{served.origin}/host-test/host.html")
            await page.wait_for_function("window.hostReady === true")
            options = {
                "transport": "stdio" if connection == "stdio" else "http",
                "url": served.url,
                "token": TOKEN,
                "era": "2026-07-28" if connection == "http-2026" else None,
            }
            async with _joined(page, served, host, connection):
                host.connected = await page.evaluate("options => window.host.connect(options)", options)
                yield host
    finally:
        await context.close()


# Every host that renders apps: over HTTP in both eras, and over stdio


@pytest.mark.parametrize("connection", CONNECTIONS)
async def test_the_host_shows_the_app_and_the_app_works_over_each_connection(
    browser: Any, workspace: Served, host_script: str, axe_script: str, connection: str
) -> None:
    """The model's list_sources call opens the app; the app sorts (with the app-only tool, which a
    2025-11-25 client over HTTP may call without seeing it listed), opens a source, follows a table
    refresh to its end, and comes back to the row it left."""
    async with hosted(browser, workspace, host_script, axe_script, connection=connection) as host:
        tools = {tool["name"]: tool for tool in host.connected["tools"]}
        era = "2026-07-28" if connection == "http-2026" else "2025-11-25"
        assert host.connected["protocolVersion"] == era
        assert tools["list_sources"]["_meta"] == {"ui": {"resourceUri": APP_URI}}
        # Only a stateless request of the 2025-11-25 era leaves the server unsure; it lists no app-only tool.
        assert ("list_sources_sorted" in tools) is (connection != "http")
        await host.open("list_sources", {"test_status": "failed"})
        app = host.app
        data = (await call_ok(host.expected, "list_sources", {"test_status": "failed"})).structured_content
        assert data is not None
        await expect(app.locator("#summary")).to_contain_text(f"{data['total']} of 1,000 sources match")
        assert await host.row_ids() == [source["id"] for source in data["sources"]]
        await expect(app.locator("#f-status")).to_have_value("failed")
        await host.accessible("list, filtered by the model")

        await app.locator('th[data-sort="name"] button').click()
        by_name = {"limit": 25, "offset": 0, "test_status": "failed", "sort_by": "name", "order": "asc"}
        await host.shows_page_of("list_sources_sorted", by_name)

        row = app.locator("tbody tr[data-id]").nth(2)
        source_id = int(await row.get_attribute("data-id"))
        await row.focus()
        await row.press("Enter")
        await expect(app.locator("#d-name")).to_be_focused()
        detail = (await call_ok(host.expected, "get_source", {"source_id": source_id})).structured_content
        assert detail is not None
        await expect(app.locator("#d-name")).to_have_text(detail["name"])
        await host.refreshes_tables(source_id, detail)
        await app.locator("#back").click()
        await expect(app.locator(f'tbody tr[data-id="{source_id}"]')).to_be_focused()
        host.assert_clean()


# What a user sees: the list


async def test_counts_charts_filters_and_paging_show_what_the_tools_return(
    browser: Any, workspace: Served, host_script: str, axe_script: str
) -> None:
    async with hosted(browser, workspace, host_script, axe_script) as host:
        await host.open("list_sources")
        app = host.app
        data = (await call_ok(host.expected, "list_sources", {})).structured_content
        assert data is not None
        assert data["workspace_total"] == 1000
        await expect(app.locator("#summary")).to_contain_text("1,000 of 1,000 sources match")
        failed = data["counts"]["by_test_status"]["failed"]
        await expect(app.locator("#summary")).to_contain_text(f"{failed} failed their last test")
        statuses = [[key, data["counts"]["by_test_status"][key]] for key in ("failed", "untested", "passed")]
        assert await host.bars("#chart-status") == statuses
        types = list(data["counts"]["by_type"].items())
        assert await host.bars("#chart-type") == [list(pair) for pair in types[:5]]
        await expect(app.locator("#chart-type .more")).to_have_text(
            f"{len(types) - 5} more: {sum(n for _, n in types[5:])} sources"
        )
        assert await host.bars("#chart-group") == [list(pair) for pair in data["counts"]["by_group"].items()]
        # Types by their labels from list_source_types, in the charts, the filter and the rows.
        catalogue = (await call_ok(host.expected, "list_source_types", {})).structured_content
        assert catalogue is not None
        labels = {kind["service_name"]: kind["label"] for kind in catalogue["types"]}
        await expect(app.locator('#chart-type .bar[data-value="big_query"] .bar-label')).to_have_text(
            "BigQuery"
        )
        await expect(app.locator('#f-type option[value="big_query"]')).to_have_text("BigQuery")
        first_type = labels[data["sources"][0]["type"]]
        await expect(app.locator("tbody tr[data-id]").first.locator("td").nth(2)).to_have_text(first_type)
        assert await host.row_ids() == [source["id"] for source in data["sources"]]
        failing = [source["id"] for source in data["sources"] if source["last_test_succeeded"] is False]
        assert failing
        marked = app.locator("tbody tr.failed")
        assert await marked.evaluate_all("rows => rows.map(r => Number(r.dataset.id))") == failing
        await expect(app.locator("tbody tr.failed .badge").first).to_have_text("Failed")
        await expect(app.locator("#range")).to_have_text("1\u201325 of 1,000")
        # The host handed the model's result over: the app called only for the type labels.
        assert host.calls == [("list_sources", {}), ("list_source_types", {"limit": 100})]
        # Inline, in a chat column 1,280 px wide, the view stays within about 700 px.
        assert await host.settled_height() <= INLINE_MAX_HEIGHT
        await host.accessible("list")
        await host.screenshot("sources-light-wide")
        await host.set_theme("dark")
        await host.accessible("list, dark")
        await host.screenshot("sources-dark-wide")
        await host.set_theme("light")

        await app.locator("#f-type").select_option("big_query")
        bigquery = await host.shows_page_of("list_sources", FIRST_PAGE | {"type": "big_query"})
        # The charts keep the whole workspace in view; each bar shows its matches besides.
        assert await host.bars("#chart-status") == statuses
        matching = await app.locator("#chart-status .bar").evaluate_all(
            "bars => bars.map(b => Number(b.dataset.matching))"
        )
        assert matching == [bigquery["counts"]["by_test_status"][key] for key, _ in statuses]
        bar = app.locator('#chart-type .bar[data-value="big_query"]')
        await expect(bar).to_have_attribute("aria-pressed", "true")
        await expect(app.locator("#summary")).to_contain_text(f"{bigquery['total']} of 1,000 sources match")
        await app.locator("#f-status").select_option("passed")
        await host.shows_page_of("list_sources", FIRST_PAGE | {"type": "big_query", "test_status": "passed"})
        await app.locator("#f-name").fill("prod")
        search = FIRST_PAGE | {"type": "big_query", "test_status": "passed", "name_contains": "prod"}
        found = await host.shows_page_of("list_sources", search)
        assert all("prod" in (s["name"] + (s["label"] or "")).lower() for s in found["sources"])
        await host.accessible("list, filtered")
        await app.locator("#f-clear").click()
        await host.shows_page_of("list_sources", FIRST_PAGE)
        group = next(iter(data["counts"]["by_group"]))
        await app.locator(f'#chart-group .bar[data-value="{group}"]').click()
        await host.shows_page_of("list_sources", FIRST_PAGE | {"group_id": group})
        await app.locator("#f-clear").click()
        await host.shows_page_of("list_sources", FIRST_PAGE)

        # Any page, in a few clicks: the page size, the last page, a page by number, the first.
        hundred = FIRST_PAGE | {"limit": 100}
        await app.locator("#page-size").select_option("100")
        await host.shows_page_of("list_sources", hundred)
        await expect(app.locator("#pages")).to_have_text("10")
        await app.locator("#last").click()
        last = await host.shows_page_of("list_sources", hundred | {"offset": 900})
        await expect(app.locator("#range")).to_have_text(f"901\u2013{900 + len(last['sources']):,} of 1,000")
        if last["next_offset"] is not None:
            # A hundred rows can be over the result's size cap: Next goes on from where the page ended.
            await app.locator("#next").click()
            await host.shows_page_of("list_sources", hundred | {"offset": last["next_offset"]})
            await expect(app.locator("#range")).to_have_text(
                f"{last['next_offset'] + 1:,}\u20131,000 of 1,000"
            )
        await expect(app.locator("#next")).to_be_disabled()
        await app.locator("#page").fill("4")
        await app.locator("#page").press("Enter")
        await host.shows_page_of("list_sources", hundred | {"offset": 300})
        await app.locator("#prev").click()
        await host.shows_page_of("list_sources", hundred | {"offset": 200})
        await app.locator("#first").click()
        await host.shows_page_of("list_sources", hundred)
        await expect(app.locator("#prev")).to_be_disabled()
        # A hundred rows scroll within the view: it is no taller inline.
        assert await host.settled_height() <= INLINE_MAX_HEIGHT

        # Fullscreen where the host offers it, through the host's display modes.
        await app.locator("#fullscreen").click()
        await expect(app.locator("#fullscreen")).to_have_text("Exit fullscreen")
        assert (await host.seen())["displayModes"] == ["fullscreen"]
        await expect(host.page.locator("iframe")).to_have_class("fullscreen")
        await app.locator("#fullscreen").click()
        await expect(app.locator("#fullscreen")).to_have_text("Fullscreen")
        host.assert_clean()


DATE_WITH_AGE = re.compile(
    r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d [AP]M \((just now|\d+ \w+ ago|yesterday|last \w+)\)"
)


async def test_dates_read_one_way_with_an_age_and_stale_tests_are_marked(
    browser: Any, workspace: Served, host_script: str, axe_script: str
) -> None:
    sources = workspace.sandbox.workspace.sources
    newest = sources[max(sources)]
    kept = newest["last_tested_at"], newest["last_test_succeeded"]
    newest["last_tested_at"] = _stamp(datetime.now(UTC) - timedelta(days=90))
    newest["last_test_succeeded"] = True
    try:
        async with hosted(browser, workspace, host_script, axe_script) as host:
            await host.open("list_sources", {"limit": 10})
            app = host.app
            tested = app.locator("tbody tr[data-id] td.when")
            # Every date as "Sep 5, 2026, 6:50 PM (3 months ago)", in the host's locale and time zone.
            texts = await tested.all_inner_texts()
            dated = [text for text in texts if text != "Never tested"]
            assert dated
            for text in dated:
                assert DATE_WITH_AGE.fullmatch(text.removesuffix(" stale")), text
            await expect(tested.first).to_contain_text("(3 months ago) stale")
            assert sum(text.endswith("stale") for text in texts) == 1
            await expect(tested.first.locator("time")).to_have_attribute(
                "datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            )
            await expect(app.locator("#summary")).to_contain_text("read from Census")
            await expect(app.locator("#summary time")).to_have_count(1)
            await host.accessible("list with a stale test")
            host.assert_clean()
    finally:
        newest["last_tested_at"], newest["last_test_succeeded"] = kept


# One source, the conversation, and the host's look

# Connection details' keys the app writes otherwise than as plain words.
WORDS = {"ssh_tunnel_enabled": "SSH tunnel enabled", "http_path": "HTTP path"}


async def test_a_source_opens_masked_with_focus_and_can_be_asked_about(
    browser: Any, workspace: Served, host_script: str, axe_script: str
) -> None:
    async with hosted(browser, workspace, host_script, axe_script) as host:
        await host.open("list_sources", {"test_status": "failed"})
        app = host.app
        row = app.locator("tbody tr[data-id]").first
        source_id = int(await row.get_attribute("data-id"))
        await row.click()
        await expect(app.locator("#d-name")).to_be_focused()
        assert host.calls[-1] == ("get_source", {"source_id": source_id})
        detail = (await call_ok(host.expected, "get_source", {"source_id": source_id})).structured_content
        assert detail is not None
        await expect(app.locator("#d-name")).to_have_text(detail["name"])
        # Connection details as get_source gives them, named in words, secrets masked.
        connection = app.locator("#d-connection")
        assert await connection.locator("dt").all_text_contents() == [
            WORDS.get(key, key.replace("_", " ").capitalize()) for key in detail["connection_details"]
        ]
        assert MASK in await connection.inner_text()
        step = detail["last_test_results"]["steps"][0]
        await expect(app.locator("#d-steps li").first).to_contain_text(step["error"]["message"])
        by_kind = detail["data_sources"]["by_kind"]
        await expect(app.locator("#d-counts")).to_contain_text(f"{by_kind['table']} tables")
        html = await app.locator("html").evaluate("html => html.outerHTML")
        assert "SANDBOX-SECRET" not in html
        assert host.served.sandbox.token not in html
        await host.accessible("details")
        await host.screenshot("source-detail-light-wide")

        # The conversation: a question about this source, and what the user is looking at.
        await app.locator("#ask").click()
        await expect(app.locator("#asked")).to_have_text("Asked in the chat.")
        seen = await host.seen()
        question = f"Why is source #{source_id} failing its connection test?"
        assert seen["messages"] == [{"role": "user", "content": [{"type": "text", "text": question}]}]
        told = seen["modelContext"][-1]
        assert told["structuredContent"]["open_source_id"] == source_id
        assert told["structuredContent"]["filters"]["test_status"] == "failed"
        assert f"source #{source_id} open" in told["content"][0]["text"]
        assert detail["name"] not in json.dumps(seen)  # Census text never reaches the chat
        await app.locator("#back").click()
        await expect(app.locator(f'tbody tr[data-id="{source_id}"]')).to_be_focused()
        told = (await host.seen())["modelContext"][-1]
        assert told["structuredContent"]["open_source_id"] is None
        host.assert_clean()


async def test_a_host_without_messages_context_or_fullscreen_loses_nothing_else(
    browser: Any, workspace: Served, host_script: str, axe_script: str
) -> None:
    """In a narrow column, with the host's fonts, style variables and safe-area insets applied; what
    the host does not offer is not offered, and the rest works."""
    fonts = '@font-face { font-family: "Host Sans"; src: local("DejaVu Sans"); }'
    context = {
        "styles": {
            "variables": {
                "--font-sans": '"Host Sans", sans-serif',
                "--color-text-primary": "rgb(20, 30, 90)",
            },
            "css": {"fonts": fonts},
        },
        "safeAreaInsets": {"top": 24, "right": 0, "bottom": 16, "left": 8},
    }
    features = {"message": False, "modelContext": False, "fullscreen": False}
    async with hosted(browser, workspace, host_script, axe_script, width=NARROW) as host:
        await host.open("get_source", {"source_id": 7}, features=features, context=context)
        app = host.app
        await expect(app.locator("#d-name")).to_have_text(host.served.sandbox.workspace.sources[7]["name"])
        await expect(app.locator("#ask")).to_be_hidden()
        await expect(app.locator("#fullscreen")).to_be_hidden()
        await expect(app.locator("#refresh")).to_be_visible()
        await expect(app.locator("body")).to_have_css("font-family", '"Host Sans", sans-serif')
        families = await host.app_frame.evaluate("[...document.fonts].map(face => face.family)")
        assert {'"Host Sans"', "Host Sans"} & set(families)
        await expect(app.locator("main")).to_have_css("padding-top", "34px")
        await expect(app.locator("main")).to_have_css("padding-left", "18px")
        await expect(app.locator("#d-name")).to_have_css("color", "rgb(20, 30, 90)")
        # Opened on a source, Back lists the workspace, and focus has somewhere to go.
        await app.locator("#back").click()
        await host.shows_page_of("list_sources", FIRST_PAGE)
        await expect(app.locator("#title")).to_be_focused()
        await expect(app.locator("#workspace")).not_to_have_attribute("open", "")
        assert (await host.seen()) == {"messages": [], "modelContext": [], "displayModes": []}
        await host.accessible("narrow list")
        await host.screenshot("sources-light-narrow")
        await host.set_theme("dark")
        await host.screenshot("sources-dark-narrow")
        host.assert_clean()


async def test_a_hostile_name_shows_as_text(
    browser: Any, workspace: Served, host_script: str, axe_script: str
) -> None:
    sources = workspace.sandbox.workspace.sources
    [failing] = [source for source in sources.values() if source["last_test_succeeded"] is False][:1]
    kept = failing["name"], failing["last_test_results"]
    failing["name"] = HOSTILE
    failing["last_test_results"] = {
        "steps": [{"step": "connect", "status": "failed", "error": {"message": HOSTILE_ERROR}}]
    }
    try:
        async with hosted(browser, workspace, host_script, axe_script) as host:
            await host.open("list_sources", {"name_contains": "onerror"})
            app = host.app
            assert await host.row_ids() == [failing["id"]]
            await expect(app.locator("tbody .name-text")).to_have_text(HOSTILE)
            await app.locator("tbody tr[data-id]").click()
            await expect(app.locator("#d-name")).to_have_text(HOSTILE)
            await expect(app.locator(".step-error")).to_have_text(HOSTILE_ERROR)
            # Text, not markup: no element came of it, and nothing ran (a dialog or a request would show).
            await expect(app.locator("img")).to_have_count(0)
            await expect(app.locator("b")).to_have_count(0)
            await expect(app.locator("script")).to_have_count(3)  # the app's config, bridge and code
            host.assert_clean()
    finally:
        failing["name"], failing["last_test_results"] = kept


# Sound when Census fails: the last good result stays and the controls return to it


async def test_census_down_before_the_first_call(
    browser: Any, flaky: Served, host_script: str, axe_script: str
) -> None:
    """The model's own call fails: the app says so, with what to do and a Retry, and shows no empty
    table or charts and no way to page; once Census is back, Retry shows the list."""
    # Connections that drop: the model reads "Could not reach Census ... Check CENSUS_API_BASE_URL".
    flaky.sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",))
    async with hosted(browser, flaky, host_script, axe_script) as host:
        await host.open("list_sources", {"type": "snowflake"})
        app = host.app
        problem = app.locator("#problem")
        await expect(problem).to_be_visible()
        await expect(problem).to_contain_text("Census is not answering right now. Wait a moment, then retry.")
        await expect(app.locator("#list-view")).to_be_hidden()
        await expect(app.locator("#next")).to_be_hidden()
        await host.assert_plain_problem()
        await expect(problem).to_have_css("border-left-width", "4px")
        await host.accessible("error before any data")
        await host.screenshot("sources-error")
        await app.locator("#retry").click()
        await host.called_with("list_sources", FIRST_PAGE | {"type": "snowflake"})
        await expect(app.locator("#app")).to_have_attribute("aria-busy", "false")
        await expect(problem).to_be_visible()
        flaky.sandbox.workspace.faults = NO_FAULTS
        await app.locator("#retry").click()
        await host.shows_page_of("list_sources", FIRST_PAGE | {"type": "snowflake"})
        await expect(problem).to_be_hidden()
        await expect(app.locator("#f-type")).to_have_value("snowflake")
        host.assert_clean()


async def test_census_down_after_the_first_call(
    browser: Any, flaky: Served, host_script: str, axe_script: str
) -> None:
    ten = {"limit": 10, "offset": 0, "order": "desc"}
    async with hosted(browser, flaky, host_script, axe_script) as host:
        await host.open("list_sources", {"limit": 10})
        app = host.app
        first = await host.rows_and_summary()
        problem = app.locator("#problem")

        # While a call is in flight, paging waits for it.
        flaky.sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("slow",), slow_seconds=1.0)
        await app.locator("#next").click()
        for control in ("#first", "#prev", "#next", "#last"):
            await expect(app.locator(control)).to_be_disabled()
        await expect(app.locator("#app")).to_have_attribute("aria-busy", "true")
        await host.shows_page_of("list_sources", ten | {"offset": 10})
        await expect(app.locator("#next")).to_be_enabled()
        flaky.sandbox.workspace.faults = NO_FAULTS
        await app.locator("#first").click()
        await host.shows_page_of("list_sources", ten)

        flaky.sandbox.workspace.faults = DOWN
        await app.locator("#f-status").select_option("failed")
        await expect(problem).to_be_visible()
        # The last good result stays, and every control is back where it shows.
        await expect(app.locator("#f-status")).to_have_value("")
        assert await host.rows_and_summary() == first
        await expect(problem).to_contain_text("Census is not answering right now.")
        await host.assert_plain_problem()
        await host.accessible("error after data")
        await app.locator("#next").click()
        await host.called_with("list_sources", ten | {"offset": 10})
        await expect(app.locator("#app")).to_have_attribute("aria-busy", "false")
        await expect(app.locator("#page")).to_have_value("1")
        assert await host.rows_and_summary() == first
        # A source that cannot be read leaves the list as it was.
        await app.locator("tbody tr[data-id]").first.click()
        await host.called_with("get_source", {"source_id": first[0][0]})
        await expect(app.locator("#app")).to_have_attribute("aria-busy", "false")
        await expect(app.locator("#list-view")).to_be_visible()
        await expect(problem).to_be_visible()
        # Retry tries what failed last; with Census back, it works.
        flaky.sandbox.workspace.faults = NO_FAULTS
        await app.locator("#retry").click()
        await expect(app.locator("#d-name")).to_be_focused()
        await expect(problem).to_be_hidden()
        await app.locator("#back").click()
        flaky.sandbox.workspace.faults = DOWN
        await app.locator("#reload").click()
        await expect(problem).to_be_visible()
        flaky.sandbox.workspace.faults = NO_FAULTS
        await app.locator("#f-status").select_option("failed")
        await host.shows_page_of("list_sources", ten | {"test_status": "failed"})
        await expect(problem).to_be_hidden()
        host.assert_clean()


async def test_with_60_percent_of_requests_failing_the_view_always_agrees_with_its_controls(
    browser: Any, flaky: Served, host_script: str, axe_script: str
) -> None:
    """Whichever calls fail, after each action the rows, count and range are those of the filters,
    page size and page the controls show."""
    async with hosted(browser, flaky, host_script, axe_script) as host:
        await host.open("list_sources", {"limit": 10})
        app = host.app
        listed = (await call_ok(host.expected, "list_sources", {"limit": 100})).structured_content
        assert listed is not None
        everything = listed["sources"]
        flaky.sandbox.workspace.faults = FaultConfig(rate=0.6, kinds=("500", "502", "503"), seed=3)

        def choose(select: str, value: str) -> Callable[[], Awaitable[bool]]:
            async def act() -> bool:
                if await app.locator(select).input_value() == value:
                    return False  # a failure took it back here already: no change, no call
                await app.locator(select).select_option(value)
                return True

            return act

        def press(button: str) -> Callable[[], Awaitable[bool]]:
            async def act() -> bool:
                if not await app.locator(button).is_enabled():
                    return False  # not on this page: no call to wait for
                await app.locator(button).click()
                return True

            return act

        actions = [
            choose("#f-type", "snowflake"),
            choose("#f-status", "passed"),
            press("#next"),
            choose("#f-status", "failed"),
            choose("#page-size", "25"),
            choose("#f-type", "postgres"),
            press("#f-clear"),
            press("#last"),
            choose("#f-status", "untested"),
            press("#prev"),
            choose("#page-size", "10"),
            press("#next"),
            choose("#f-type", "redshift"),
            press("#f-clear"),
        ]
        # Eight actions at least, on until both a failure and a success were seen.
        outcomes: list[bool] = []
        for action in itertools.islice(itertools.cycle(actions), 3 * len(actions)):
            if len(outcomes) >= 8 and len(set(outcomes)) == 2:
                break
            before = len(host.calls)
            if not await action():
                continue
            with anyio.fail_after(15):
                while len(host.calls) == before:
                    await host.called.wait()
            await expect(app.locator("#app")).to_have_attribute("aria-busy", "false")
            failed = await app.locator("#problem").is_visible()
            await host.agrees_with_its_controls(everything)
            if failed and True not in outcomes:
                await host.accessible("an action failed")
            outcomes.append(failed)
        assert set(outcomes) == {True, False}
        host.assert_clean()
