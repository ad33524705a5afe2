"""The MCP layer: every tool, in the order tools/list shows them."""

from census_mcp.tools.base import AppState, ToolDefinition
from census_mcp.tools.catalog import get_source_type, list_source_tables, list_source_types
from census_mcp.tools.refresh import get_refresh_tables_status, refresh_source_tables
from census_mcp.tools.sources import create_source, delete_source, get_source, list_sources, update_source

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

__all__ = ["ALL_TOOLS", "AppState", "ToolDefinition"]
