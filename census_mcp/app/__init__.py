"""The sources app: list_sources and get_source as an interactive view, for hosts that render
MCP Apps (the io.modelcontextprotocol/ui extension).

The host shows the app next to the answer whenever the model calls one of the tools it is bound
to; from there the app calls the server's tools itself (paging, sorting, details, refreshing
tables), so its rows never cost the model's context.

It is one self-contained HTML document: sources.html, with the host bridge inlined from the
published ext-apps `app-with-deps` build (vendor/, copied by scripts/vendor-ext-apps). It needs no
network at run time, and says so twice: in `_meta.ui.csp` for the host, and in its own CSP, which
lets only its own scripts and style run.

Who sees it depends on what the client said (`AppSupport`). A client that declared MCP Apps sees it
all; one that declared capabilities without it sees the server as if there were no app. A client
that could not tell (a stateless HTTP request in the 2025-11-25 era carries no capabilities) is
offered the app as the SDK offers it by default, `_meta.ui` and the resource, less the app-only tools'
listing, which would cost every such client's model their schemas; the app may still call them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from mcp.server.apps import Apps, ResourceCsp
from mcp.types import Resource, Tool

from census_mcp.tools import ToolDefinition

APP_URI = "ui://census-mcp/sources.html"
# The tools whose results the host shows in the app.
SHOWN_BY = ("list_sources", "get_source")
# The tools the app calls itself; it hides what calls a tool the server does not offer.
CALLS = (
    "list_sources",
    "list_sources_sorted",
    "get_source",
    "list_source_types",
    "refresh_source_tables",
    "get_refresh_tables_status",
)

AppSupport = Literal["declared", "unknown", "absent"]
"""What a client said of MCP Apps: declared it, could not say (no capabilities reached the server),
or declared capabilities without it."""

_EXPORTS = re.compile(r"export\s*\{([^}]*)\}\s*;?\s*$")
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)
_MODULE = re.compile(r'<script type="module">(.*?)</script>', re.DOTALL)


@dataclass(frozen=True)
class SourcesApp:
    """The app as this server offers it: the extension to register, and what it adds to tools."""

    extension: Apps
    app_only: frozenset[str]

    def tool_meta(self, definition: ToolDefinition) -> dict[str, Any] | None:
        """The `_meta` a tool carries for app hosts: the app it shows in, or that only the app calls it."""
        if definition.app_only:
            return {"ui": {"visibility": ["app"]}}
        if definition.name in SHOWN_BY:
            return {"ui": {"resourceUri": APP_URI}}
        return None

    def tools_for(self, tools: Sequence[Tool], support: AppSupport) -> list[Tool]:
        """The tools as a client sees them: all of them once it declared MCP Apps; else without the
        app-only ones, and, for a client that declared capabilities without it, without `_meta.ui`."""
        if support == "declared":
            return list(tools)
        listed = [tool for tool in tools if tool.name not in self.app_only]
        if support == "unknown":
            return listed
        return [tool.model_copy(update={"meta": _without_ui(tool.meta)}) for tool in listed]

    @staticmethod
    def resources_for(resources: Sequence[Resource], support: AppSupport) -> list[Resource]:
        if support == "absent":
            return [resource for resource in resources if str(resource.uri) != APP_URI]
        return list(resources)


def _without_ui(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    rest = {key: value for key, value in (meta or {}).items() if key != "ui"}
    return rest or None


def sources_app(offered: Sequence[ToolDefinition]) -> SourcesApp | None:
    """The app for the tools this server offers; None when list_sources, what it shows, is not one."""
    names = [definition.name for definition in offered]
    if "list_sources" not in names:
        return None
    apps = Apps()
    apps.add_html_resource(
        APP_URI,
        sources_html([name for name in CALLS if name in names]),
        name="sources",
        title="Census sources",
        description="The workspace's sources: counts, a sortable table, and each source's details.",
        # Nothing to reach: no fetches, no scripts, styles, fonts or images from anywhere, no frames.
        csp=ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[]),
        prefers_border=True,
    )
    return SourcesApp(
        extension=apps,
        app_only=frozenset(definition.name for definition in offered if definition.app_only),
    )


def sources_html(tools: Sequence[str]) -> str:
    """The app's HTML document; `tools` are those it may call, the rest of its controls hidden."""
    page = _text("sources.html")
    style, module = _only(_STYLE, page), _only(_MODULE, page)
    bridge = _bridge_script()
    config = json.dumps({"tools": list(tools)}).replace("<", "\\u003c")
    page = _fill(page, "<!--config-->", config)
    page = _fill(page, "<!--bridge-->", bridge)
    # Hashes, not 'unsafe-inline': markup that slipped in could run no script and no inline handler.
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_hash(bridge)} {_hash(module)}",
            f"style-src {_hash(style)}",
            "img-src 'none'",
            # The host's fonts, from the @font-face rules it gives the app; no markup can name one,
            # as only the app's own style and the sheet its script builds from them may apply.
            "font-src https: data:",
            "connect-src 'none'",
            "frame-src 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )
    return _fill(page, "<!--csp-->", policy)


@cache
def _bridge_script() -> str:
    """ext-apps' `app-with-deps` build, an ES module, as a classic script that puts its exports on
    `globalThis.McpExtApps`: a document with one file's worth of scripts cannot import a module."""
    module = _text("vendor/app-with-deps.js")
    exports = _EXPORTS.search(module)
    if exports is None or "</script" in module.lower():
        raise RuntimeError("vendor/app-with-deps.js is not an ext-apps build the app can inline")
    pairs = []
    for export in exports.group(1).split(","):
        local, _, exported = export.strip().partition(" as ")
        pairs.append(f"{exported or local}:{local}")
    return f"{module[: exports.start()]}globalThis.McpExtApps=Object.freeze({{{','.join(pairs)}}});"


def _text(name: str) -> str:
    """A file of the app, with the line ends an HTML parser leaves, so that hashes match what runs."""
    text = (files(__name__) / name).read_text(encoding="utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _fill(page: str, marker: str, value: str) -> str:
    if page.count(marker) != 1:
        raise RuntimeError(f"sources.html must hold {marker} once")
    return page.replace(marker, value)


def _only(pattern: re.Pattern[str], page: str) -> str:
    [found] = pattern.findall(page)
    text: str = found
    return text


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
