"""The MCP layer: every tool, in the order tools/list shows them."""

import difflib

from census_mcp.settings import Settings, SettingsError
from census_mcp.tools.base import AppState, ToolDefinition
from census_mcp.tools.catalog import get_source_type, list_source_tables, list_source_types
from census_mcp.tools.refresh import get_refresh_tables_status, refresh_source_tables
from census_mcp.tools.sources import (
    create_source,
    delete_source,
    get_source,
    list_sources,
    list_sources_sorted,
    update_source,
)

ALL_TOOLS: tuple[ToolDefinition, ...] = (
    list_sources,
    get_source,
    create_source,
    update_source,
    delete_source,
    refresh_source_tables,
    get_refresh_tables_status,
    list_source_types,
    get_source_type,
    list_source_tables,
)
APP_ONLY_TOOLS: tuple[ToolDefinition, ...] = (list_sources_sorted,)


def select_tools(settings: Settings) -> tuple[ToolDefinition, ...]:
    """The tools this server offers: read-only mode drops the writes, then the allow and deny lists apply.

    A tool left out is neither listed nor callable. An unknown name fails start-up, so that a
    typo cannot silently leave a write tool switched on.

    The app-only tools come with the sources app, which shows list_sources: they are offered when
    the app is on and list_sources is, unless --exclude-tools names them.
    """
    known = {tool.name for tool in (*ALL_TOOLS, *APP_ONLY_TOOLS)}
    unknown = sorted((set(settings.tools) | set(settings.exclude_tools)) - known)
    if unknown:
        raise SettingsError(
            f"Unknown tool name(s) {', '.join(unknown)}; the tools are: {', '.join(sorted(known))}."
        )
    offered = tuple(
        tool
        for tool in ALL_TOOLS
        if (tool.read_only or not settings.read_only)
        and (not settings.tools or tool.name in settings.tools)
        and tool.name not in settings.exclude_tools
    )
    if not settings.app or list_sources not in offered:
        return offered
    return offered + tuple(tool for tool in APP_ONLY_TOOLS if tool.name not in settings.exclude_tools)


_NAME_CHARS = 100


def why_not_offered(name: str, settings: Settings) -> str:
    """Why there is no tool `name` to call: which setting turned it off, or, for a name no tool has,
    the closest names. An unknown name is not repeated: it is the caller's text, of any length."""
    if name in {tool.name for tool in ALL_TOOLS}:
        if settings.read_only and not next(tool for tool in ALL_TOOLS if tool.name == name).read_only:
            return f"{name} is turned off by --read-only (CENSUS_MCP_READ_ONLY): this server only reads."
        if settings.tools and name not in settings.tools:
            return f"{name} is turned off: it is not among --tools (CENSUS_MCP_TOOLS)."
        return f"{name} is turned off by --exclude-tools (CENSUS_MCP_EXCLUDE_TOOLS)."
    # The names a client without the sources app sees: the app-only tools are none of them.
    offered = [tool.name for tool in select_tools(settings) if not tool.app_only]
    closest = difflib.get_close_matches(name[:_NAME_CHARS], offered, n=3, cutoff=0.5)
    guess = f" Did you mean {' or '.join(closest)}?" if closest else ""
    return f"No tool has that name.{guess} The tools are listed by tools/list, or `census-mcp tools`."


__all__ = ["ALL_TOOLS", "APP_ONLY_TOOLS", "AppState", "ToolDefinition", "select_tools", "why_not_offered"]
