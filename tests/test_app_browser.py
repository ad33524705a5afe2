"""The sources app in a real browser: headless Chromium, driven by Playwright, loads the app from the
server's ui:// resource into a sandboxed iframe of a small host page built on ext-apps' AppBridge, and
every tool call the app makes goes to census-mcp, which reads a 1,000-source sandbox workspace over
loopback.

They run on API v2 alone: the app shows what the tools return, which the other tests prove equal on
both versions, and v2 is the one with groups, so it renders every chart. The screenshots (light and
dark, wide and narrow) land in build/app-screenshots/ for CI to keep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import TextResourceContents

from census_mcp.redaction import MASK
from census_mcp.server import build_server
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_ok
from tests.test_real_clients import ROOT, node_tool

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is missing: pip install -e '.[test]'"
)
expect, async_playwright = playwright_api.expect, playwright_api.async_playwright

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("browser")]  # one Chromium, one bundle

HOST = "http://host.test"
SHOTS = ROOT / "build" / "app-screenshots"
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_ERROR = "<script>alert(2)</script> and <b>not bold</b>"
WIDE, NARROW = 900, 360
# The app's own colours when the host gives no style variables (sources.html, --bg).
BACKGROUNDS = {"light": "rgb(255, 255, 255)", "dark": "rgb(31, 31, 30)"}
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
BUNDLE = ("--format", "esm", "--platform", "browser", "--minify")


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
def bridge_bundle() -> str:
    """ext-apps' app-bridge for the browser, bundled once per run (about a second)."""
    out = ROOT / "build" / "app-host" / "app-bridge.mjs"
    done = subprocess.run(
        [node_tool("rolldown"), str(ROOT / "tests" / "app_host" / "bridge.mjs"), "--file", str(out), *BUNDLE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_text()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that one browser serves every test here."""
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


@pytest.fixture
def workspace() -> Iterator[Sandbox]:
    """1,000 sources on API v2; table refreshes take 1.2 s, long enough to show progress."""
    with running_sandbox("v2", size=1000, refresh_seconds=1.2) as sandbox:
        yield sandbox


@dataclass
class Host:
    """The page, the app's frame inside it, and what happened: tool calls, console errors, requests."""

    page: Any
    client: Client
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    called: anyio.Event = field(default_factory=anyio.Event)
    """Set, then replaced, at each tool call the app makes."""

    def record(self, tool: str, arguments: dict[str, Any]) -> None:
        self.calls.append((tool, arguments))
        called, self.called = self.called, anyio.Event()
        called.set()

    @property
    def app(self) -> Any:
        return self.page.frame_locator("iframe")

    async def row_ids(self) -> list[int]:
        ids: list[int] = await self.app.locator("tbody tr[data-id]").evaluate_all(
            "rows => rows.map(row => Number(row.dataset.id))"
        )
        return ids

    async def shows_page_of(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Wait until the app has called `tool` with `arguments` and shows the page it returned."""
        with anyio.fail_after(10):
            while not self.calls or self.calls[-1] != (tool, arguments):
                await self.called.wait()
        await expect(self.app.locator("#app")).to_have_attribute("aria-busy", "false")
        expected: dict[str, Any] | None = (await call_ok(self.client, tool, arguments)).structured_content
        assert expected is not None
        ids = [source["id"] for source in expected["sources"]]
        await expect(self.app.locator("tbody tr[data-id]")).to_have_count(len(ids))
        assert await self.row_ids() == ids
        return expected

    async def screenshot(self, name: str, height: int | None = None) -> None:
        """The whole app, or its top `height` px: once its height has settled, the viewport is made as
        tall as the page, since Chromium leaves an iframe's content below the viewport unpainted in a
        full-page shot."""
        frame = self.page.frames[1]
        with anyio.fail_after(10):
            while True:
                wanted = await frame.evaluate(
                    "Math.ceil(document.documentElement.getBoundingClientRect().height)"
                )
                shown = await self.page.evaluate("document.querySelector('iframe').clientHeight")
                if wanted == shown:
                    break
                await anyio.sleep(0.05)
        width = self.page.viewport_size["width"]
        await self.page.set_viewport_size({"width": width, "height": shown})
        SHOTS.mkdir(parents=True, exist_ok=True)
        clip = {"x": 0, "y": 0, "width": width, "height": min(height or shown, shown)}
        await self.page.screenshot(path=SHOTS / f"{name}.png", clip=clip)

    async def set_theme(self, theme: str) -> None:
        await self.page.evaluate("theme => setHostContext({ theme })", theme)
        body = self.app.locator("body")
        await expect(body).to_have_css("background-color", BACKGROUNDS[theme])

    def assert_clean(self) -> None:
        """No script error, no CSP violation, and no request beyond the host page and its bridge."""
        assert self.errors == []
        assert sorted(set(self.requests)) == [f"{HOST}/app-bridge.mjs", f"{HOST}/host.html"]


@asynccontextmanager
async def app_in_browser(
    browser: Any,
    sandbox: Sandbox,
    bridge: str,
    *,
    opened_by: tuple[str, dict[str, Any]] = ("list_sources", {}),
    width: int = WIDE,
    theme: str = "light",
    **settings: Any,
) -> AsyncIterator[Host]:
    """The app as a host shows it after the model called `opened_by`, in a page `width` px wide."""
    async with Client(build_server(sandbox.settings(**settings)), extensions=[APPS]) as client:
        tool_name, arguments = opened_by
        [tool] = [tool for tool in (await client.list_tools()).tools if tool.name == tool_name]
        assert tool.meta is not None
        [content] = (await client.read_resource(tool.meta["ui"]["resourceUri"])).contents
        assert isinstance(content, TextResourceContents)
        assert content.mime_type == APP_MIME_TYPE
        assert content.meta is not None
        opened = await call_ok(client, tool_name, arguments)
        context = await browser.new_context(viewport={"width": width, "height": 700})
        try:
            page = await context.new_page()
            host = Host(page=page, client=client)
            await _serve_host_page(host, bridge)
            await page.goto(f"{HOST}/host.html")
            await page.wait_for_function("window.hostReady === true")
            await page.evaluate(
                "startApp",
                {
                    "html": content.text,
                    "csp": content.meta["ui"]["csp"],
                    "tool": tool.model_dump(mode="json", by_alias=True, exclude_none=True),
                    "toolArguments": arguments,
                    "toolResult": _wire(opened),
                    "hostContext": {"theme": theme, "displayMode": "inline", "locale": "en-US"},
                },
            )
            await expect(host.app.locator("#app")).to_have_attribute("aria-busy", "false")
            yield host
        finally:
            await context.close()


async def _serve_host_page(host: Host, bridge: str) -> None:
    """The host page and its bridge, served by the test itself: nothing leaves the machine."""
    page = host.page

    def on_console(message: Any) -> None:
        if message.type == "error":  # CSP violations are reported here too
            host.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: host.errors.append(str(error)))
    page.on("dialog", lambda dialog: host.errors.append(f"dialog: {dialog.message}"))
    page.on("request", lambda request: host.requests.append(request.url))
    files = {
        f"{HOST}/host.html": ((ROOT / "tests" / "app_host" / "host.html").read_text(), "text/html"),
        f"{HOST}/app-bridge.mjs": (bridge, "text/javascript"),
    }

    async def serve(route: Any) -> None:
        body, kind = files.get(route.request.url, ("", "text/plain"))
        await route.fulfill(status=200 if body else 404, body=body, content_type=kind)

    await page.route("**/*", serve)

    async def call_server_tool(name: str, arguments: dict[str, Any], token: Any) -> dict[str, Any]:
        host.record(name, arguments)

        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await page.evaluate("args => sendProgress(...args)", [token, progress, total, message])

        result = await host.client.call_tool(name, arguments, progress_callback=relay if token else None)
        return _wire(result)

    await page.expose_function("callServerTool", call_server_tool)


def _wire(result: Any) -> dict[str, Any]:
    wire: dict[str, Any] = json.loads(result.model_dump_json(by_alias=True, exclude_none=True))
    return wire


async def test_the_app_shows_the_workspace_counts_and_first_page(
    browser: Any, workspace: Sandbox, bridge_bundle: str
) -> None:
    async with app_in_browser(browser, workspace, bridge_bundle) as host:
        expected = await call_ok(host.client, "list_sources", {})
        data = expected.structured_content
        assert data is not None
        assert data["workspace_total"] == 1000
        app = host.app
        await expect(app.locator("#summary")).to_contain_text("1,000 of 1,000 sources match")
        failed = data["counts"]["by_test_status"]["failed"]
        await expect(app.locator("#summary")).to_contain_text(f"{failed} failed their last test")
        for status, n in data["counts"]["by_test_status"].items():
            await expect(app.locator(f'#chart-status .bar[data-value="{status}"]')).to_have_attribute(
                "data-count", str(n)
            )
        type_bars = app.locator("#chart-type .bar")
        shown_types = list(data["counts"]["by_type"].items())[:8]
        assert await type_bars.evaluate_all(
            "bars => bars.map(b => [b.dataset.value, Number(b.dataset.count)])"
        ) == [list(pair) for pair in shown_types]
        group_bars = app.locator("#chart-group .bar")
        assert await group_bars.evaluate_all(
            "bars => bars.map(b => [b.dataset.value, Number(b.dataset.count)])"
        ) == [list(pair) for pair in data["counts"]["by_group"].items()]
        # The first page is list_sources' own, in its order, failing rows marked.
        ids = [source["id"] for source in data["sources"]]
        assert await host.row_ids() == ids
        failing = [source["id"] for source in data["sources"] if source["last_test_succeeded"] is False]
        assert failing
        assert (
            await app.locator("tbody tr.failed").evaluate_all("rows => rows.map(r => Number(r.dataset.id))")
            == failing
        )
        await expect(app.locator("tbody tr.failed .badge").first).to_have_text("Failed")
        await expect(app.locator("#range")).to_have_text("1\u201325 of 1,000")
        assert host.calls == []  # the host handed the model's result over; the app needed no call

        await host.screenshot("sources-light-wide")
        await host.screenshot("readme", height=560)  # docs/sources-app.png
        await host.set_theme("dark")
        await host.screenshot("sources-dark-wide")
        await host.page.set_viewport_size({"width": NARROW, "height": 700})
        await expect(app.locator("th.wide").first).to_be_hidden()
        overflow = await app.locator("html").evaluate("html => html.scrollWidth - html.clientWidth")
        assert overflow <= 0
        await host.screenshot("sources-dark-narrow")
        await host.set_theme("light")
        await host.screenshot("sources-light-narrow")
        host.assert_clean()


async def test_sorting_filtering_and_paging_call_the_right_tools(
    browser: Any, workspace: Sandbox, bridge_bundle: str
) -> None:
    async with app_in_browser(browser, workspace, bridge_bundle) as host:
        app = host.app
        page = {"limit": 25, "offset": 0, "order": "desc"}
        await app.locator("#next").click()
        await host.shows_page_of("list_sources", page | {"offset": 25})
        await expect(app.locator("#range")).to_have_text("26\u201350 of 1,000")
        await app.locator("#prev").click()
        await host.shows_page_of("list_sources", page)

        await app.locator("#f-status").select_option("failed")
        failed = await host.shows_page_of("list_sources", page | {"test_status": "failed"})
        assert {source["last_test_succeeded"] for source in failed["sources"]} == {False}
        await expect(app.locator("#summary")).to_contain_text(f"{failed['total']} of 1,000 sources match")

        await app.locator('th[data-sort="name"] button').click()
        by_name = {"limit": 25, "offset": 0, "test_status": "failed", "sort_by": "name", "order": "asc"}
        sorted_page = await host.shows_page_of("list_sources_sorted", by_name)
        names = [source["name"].casefold() for source in sorted_page["sources"]]
        assert names == sorted(names)
        await expect(app.locator('th[data-sort="name"]')).to_have_attribute("aria-sort", "ascending")
        await app.locator('th[data-sort="name"] button').click()
        await host.shows_page_of("list_sources_sorted", by_name | {"order": "desc"})
        await app.locator("#next").click()
        await host.shows_page_of("list_sources_sorted", by_name | {"order": "desc", "offset": 25})

        await app.locator("#f-type").select_option("snowflake")
        await host.shows_page_of("list_sources_sorted", by_name | {"order": "desc", "type": "snowflake"})
        await app.locator("#f-name").fill("prod")
        search = by_name | {"order": "desc", "type": "snowflake", "name_contains": "prod"}
        found = await host.shows_page_of("list_sources_sorted", search)
        assert all("prod" in (s["name"] + (s["label"] or "")).lower() for s in found["sources"])

        await app.locator('th[data-sort="newest"] button').click()
        newest = {
            "limit": 25,
            "offset": 0,
            "type": "snowflake",
            "test_status": "failed",
            "name_contains": "prod",
        }
        await host.shows_page_of("list_sources", newest | {"order": "desc"})
        await app.locator("#f-clear").click()
        await host.shows_page_of("list_sources", page)
        # A bar filters too: the group chart narrows to one group.
        group = next(
            iter((await call_ok(host.client, "list_sources", {})).structured_content["counts"]["by_group"])
        )
        await app.locator(f'#chart-group .bar[data-value="{group}"]').click()
        await host.shows_page_of("list_sources", page | {"group_id": group})
        host.assert_clean()


async def test_a_row_shows_masked_details_and_no_secret_reaches_the_page(
    browser: Any, workspace: Sandbox, bridge_bundle: str
) -> None:
    async with app_in_browser(
        browser, workspace, bridge_bundle, opened_by=("list_sources", {"test_status": "failed"})
    ) as host:
        app = host.app
        row = app.locator("tbody tr[data-id]").first
        source_id = int(await row.get_attribute("data-id"))
        await row.click()
        await expect(app.locator("#detail-view")).to_be_visible()
        assert host.calls[-1] == ("get_source", {"source_id": source_id})
        detail = (await call_ok(host.client, "get_source", {"source_id": source_id})).structured_content
        assert detail is not None
        await expect(app.locator("#d-name")).to_have_text(detail["name"])
        # Connection details as get_source gives them, secrets masked.
        connection = app.locator("#d-connection")
        assert await connection.locator("dt").all_text_contents() == list(detail["connection_details"])
        assert MASK in await connection.inner_text()
        # The last test's failing step and its error, and the models and tables.
        step = detail["last_test_results"]["steps"][0]
        await expect(app.locator("#d-steps li").first).to_contain_text(step["error"]["message"])
        by_kind = detail["data_sources"]["by_kind"]
        await expect(app.locator("#d-counts")).to_contain_text(f"{by_kind['table']} tables")
        first_table = detail["data_sources"]["first"]["table"][0]
        await expect(app.locator("#d-first")).to_contain_text(first_table)
        html = await app.locator("html").evaluate("html => html.outerHTML")
        assert "SANDBOX-SECRET" not in html
        assert workspace.token not in html
        await host.screenshot("source-detail-light-wide")
        await app.locator("#back").click()
        await expect(app.locator("#list-view")).to_be_visible()
        host.assert_clean()


async def test_a_hostile_name_shows_as_text(browser: Any, workspace: Sandbox, bridge_bundle: str) -> None:
    [failing] = [s for s in workspace.workspace.sources.values() if s["last_test_succeeded"] is False][:1]
    failing["name"] = HOSTILE
    failing["last_test_results"] = {
        "steps": [{"step": "connect", "status": "failed", "error": {"message": HOSTILE_ERROR}}]
    }
    async with app_in_browser(browser, workspace, bridge_bundle) as host:
        app = host.app
        await app.locator("#f-name").fill("onerror")
        page = {"limit": 25, "offset": 0, "order": "desc", "name_contains": "onerror"}
        await host.shows_page_of("list_sources", page)
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


async def test_refresh_tables_shows_progress_then_completion(
    browser: Any, workspace: Sandbox, bridge_bundle: str
) -> None:
    async with app_in_browser(
        browser, workspace, bridge_bundle, opened_by=("get_source", {"source_id": 7})
    ) as host:
        app = host.app
        await expect(app.locator("#d-name")).to_have_text(workspace.workspace.sources[7]["name"])
        await app.locator("#refresh").click()
        status = app.locator("#r-status")
        await expect(app.locator("#r-progress")).to_be_visible()
        await expect(app.locator("#refresh")).to_be_disabled()
        await expect(status).to_contain_text("Table refresh of source #7: processing")
        assert await app.locator("#r-progress").evaluate("bar => bar.value > 0 && bar.max === 45")
        await expect(status).to_have_text("Tables refreshed: the job completed.")
        await expect(app.locator("#r-progress")).to_be_hidden()
        await expect(app.locator("#refresh")).to_be_enabled()
        assert host.calls[-2:] == [
            ("refresh_source_tables", {"source_id": 7, "wait": True}),
            ("get_source", {"source_id": 7}),
        ]
        assert sum(r.path.endswith("/refresh_tables_status") for r in workspace.workspace.requests) >= 2
        host.assert_clean()


async def test_read_only_hides_the_refresh_button(
    browser: Any, workspace: Sandbox, bridge_bundle: str
) -> None:
    async with app_in_browser(
        browser, workspace, bridge_bundle, opened_by=("get_source", {"source_id": 7}), read_only=True
    ) as host:
        await expect(host.app.locator("#d-name")).to_have_text(workspace.workspace.sources[7]["name"])
        await expect(host.app.locator("#refresh")).to_be_hidden()
        await expect(host.app.locator("#d-connection dt").first).to_be_visible()
        host.assert_clean()
