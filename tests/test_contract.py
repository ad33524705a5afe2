"""The tools/list contract: a snapshot that fails on any unintended change, and its invariants."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from census_mcp.settings import OPTIONS
from tests.docs import DOCS, README, section

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"
EXPECTED = [
    "list_sources",
    "get_source",
    "create_source",
    "update_source",
    "delete_source",
    "refresh_source_tables",
    "get_refresh_tables_status",
    "list_source_types",
    "get_source_type",
    "list_source_tables",
]
READ_ONLY = {
    "list_sources",
    "get_source",
    "get_refresh_tables_status",
    "list_source_types",
    "get_source_type",
    "list_source_tables",
}


async def _tools(client: Client) -> list[dict[str, Any]]:
    listed = await client.list_tools()
    return [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]


async def test_tools_list_matches_the_snapshot(client: Client) -> None:
    """Regenerate deliberately with CENSUS_MCP_UPDATE_SNAPSHOTS=1 and review the diff."""
    tools = await _tools(client)
    if os.environ.get("CENSUS_MCP_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(tools, indent=2, sort_keys=True) + "\n")
    assert tools == json.loads(SNAPSHOT.read_text())


async def test_every_tool_is_fully_described(client: Client) -> None:
    tools = await _tools(client)
    assert [tool["name"] for tool in tools] == EXPECTED
    for tool in tools:
        assert tool["description"]
        assert tool["outputSchema"]["type"] == "object"
        schema = tool["inputSchema"]
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("description"), f"{tool['name']}.{name} has no description"
        hints = tool["annotations"]
        assert hints["title"]
        # Only hints that differ from the spec's defaults are sent; destructive and idempotent
        # mean something only for tools that write.
        assert "openWorldHint" not in hints
        assert hints.get("readOnlyHint", True) is True
        if hints.get("readOnlyHint"):
            assert set(hints) == {"title", "readOnlyHint"}
        else:
            assert hints.get("destructiveHint", False) is False
            assert hints.get("idempotentHint", True) is True


# The MCP spec's defaults for hints a tool leaves out.
SPEC_DEFAULTS = {
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}


async def test_annotations_are_true_to_what_tools_do(client: Client) -> None:
    hints = {tool["name"]: SPEC_DEFAULTS | tool["annotations"] for tool in await _tools(client)}
    read_only = {name for name, h in hints.items() if h["readOnlyHint"]}
    assert read_only == READ_ONLY
    destructive = {name for name, h in hints.items() if h["destructiveHint"] and not h["readOnlyHint"]}
    assert destructive == {"update_source", "delete_source"}
    assert not hints["create_source"]["idempotentHint"]
    assert not hints["refresh_source_tables"]["idempotentHint"]
    assert all(h["openWorldHint"] for h in hints.values())


async def test_results_conform_to_the_output_schema(client: Client) -> None:
    import jsonschema

    schemas = {tool["name"]: tool["outputSchema"] for tool in await _tools(client)}
    calls = {
        "list_sources": {"test_status": "failed"},
        "get_source": {"source_id": 1},
        "refresh_source_tables": {"source_id": 2},
        "list_source_types": {},
        "get_source_type": {"service_name": "snowflake"},
        "list_source_tables": {"source_id": 1},
    }
    for name, arguments in calls.items():
        result = await client.call_tool(name, arguments)
        assert not result.is_error
        jsonschema.validate(result.structured_content, schemas[name])


async def test_the_bundle_manifest_lists_the_same_tools(client: Client) -> None:
    manifest = json.loads((Path(__file__).parent.parent / "manifest.json").read_text())
    assert [tool["name"] for tool in manifest["tools"]] == [tool["name"] for tool in await _tools(client)]
    assert manifest["user_config"]["census_api_token"]["sensitive"] is True
    # The sandbox is on offer, so the bundle can be tried without an account (and then without a token).
    assert manifest["user_config"]["sandbox"] == manifest["user_config"]["sandbox"] | {
        "type": "boolean",
        "default": False,
    }
    env = manifest["server"]["mcp_config"]["env"]
    assert set(env) == {
        "CENSUS_API_TOKEN",
        "CENSUS_API_VERSION",
        "CENSUS_GROUP_ID",
        "CENSUS_REGION",
        "CENSUS_API_BASE_URL",
        "CENSUS_MCP_READ_ONLY",
        "CENSUS_MCP_SANDBOX",
    }
    assert env["CENSUS_MCP_SANDBOX"] == "${user_config.sandbox}"


def _table_rows(page: Path, heading: str) -> list[list[str]]:
    """The cells of the first table under a heading of a page."""
    rows = [line for line in section(page.read_text(), heading).splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_the_readme_lists_every_tool_in_order() -> None:
    """The table a newcomer reads (docs/tools.md shows the same one, and tools/list in full)."""
    names = [cells[0].strip("`") for cells in _table_rows(README, "Tools")]
    assert names == EXPECTED


def test_the_configuration_table_is_every_setting() -> None:
    """Each flag and environment variable (and each secret's `_FILE`) is in the docs' table, and
    nothing else."""
    page = DOCS / "configuration.md"
    rows = _table_rows(page, "Configuration")
    listed_flags = {flag for cells in rows for flag in re.findall(r"`(--[a-z-]+)`", cells[0])}
    listed_envs = {env for cells in rows for env in re.findall(r"`(CENSUS_[A-Z_]+)`", cells[1])}
    assert listed_flags == {option.flag for option in OPTIONS}
    assert listed_envs == {option.env for option in OPTIONS}
    for option in OPTIONS:
        if option.file_env:
            assert f"`{option.file_env}`" in page.read_text()


async def test_every_call_a_result_suggests_names_real_arguments(client: Client) -> None:
    """Hints such as `get_source_type(type)` or `list_source_tables(source_id=2)` are copied by the
    model as they stand: each argument they name must be one the tool takes."""
    tools = {tool["name"]: tool for tool in await _tools(client)}
    suggestion = re.compile(rf"\b({'|'.join(tools)})\(([^)]*)\)")
    calls = {
        "list_sources": {},
        "get_source": {"source_id": 2},
        "refresh_source_tables": {"source_id": 2},
        "list_source_types": {},
        "get_source_type": {"type": "snowflake"},
        "list_source_tables": {"source_id": 1},
    }
    suggested = []
    for name, arguments in calls.items():
        result = await client.call_tool(name, arguments)
        text = "\n".join(block.text for block in result.content if block.type == "text")
        for tool, given in suggestion.findall(text):
            for argument in filter(None, (part.split("=")[0].strip() for part in given.split(","))):
                suggested.append((tool, argument))
                assert argument in tools[tool]["inputSchema"]["properties"], f"{tool}({argument}) in {name}"
    assert ("get_source_type", "type") in suggested
    assert ("get_refresh_tables_status", "refresh_key") in suggested
