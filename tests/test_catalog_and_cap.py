"""Source types, tables, and the hard cap on every result."""

from __future__ import annotations

from collections import Counter

import pytest
from mcp import Client

from census_mcp.sandbox.source_types import SOURCE_TYPES
from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok, wire_bytes

pytestmark = pytest.mark.anyio


async def test_list_source_types(client: Client) -> None:
    result = await call_ok(client, "list_source_types")
    data = result.structured_content
    assert data is not None
    assert data["total"] == len(SOURCE_TYPES)
    assert {t["service_name"] for t in data["types"]} == {t["service_name"] for t in SOURCE_TYPES.values()}
    assert data["creatable_via_api"] == sum(bool(t["creatable_via_api"]) for t in SOURCE_TYPES.values())
    not_creatable = [t["service_name"] for t in SOURCE_TYPES.values() if not t["creatable_via_api"]]
    assert not_creatable
    text = result_text(result)
    for name in not_creatable:
        assert f"- {name}: " in text
        assert "(not creatable via API)" in text
    assert set(data["types"][0]) == {"service_name", "label", "creatable_via_api"}


async def test_get_source_type_gives_what_create_source_needs(client: Client, sandbox: Sandbox) -> None:
    result = await call_ok(client, "get_source_type", {"service_name": "snowflake"})
    data = result.structured_content
    assert data is not None
    fields = {field["id"]: field for field in data["fields"]}
    assert fields["account"]["required"] is True
    assert fields["account"]["secret"] is False
    assert fields["password"]["secret"] is True
    assert fields["password"]["applies_when"] == "use_keypair is not true"
    assert fields["private_key_pkcs8"]["applies_when"] == "use_keypair is true"
    assert "password" in data["example_credentials"]
    assert "private_key_pkcs8" not in data["example_credentials"]
    assert "create_source" in result_text(result)

    # The example, filled in, is a create_source call Census accepts.
    credentials = {
        key: "x-filled" if value == f"<{key}>" else value
        for key, value in data["example_credentials"].items()
    }
    created = await call_ok(client, "create_source", {"type": "snowflake", "credentials": credentials})
    assert created.structured_content is not None
    assert created.structured_content["type"] == "snowflake"


async def test_get_source_type_lists_possible_values(client: Client) -> None:
    data = (await call_ok(client, "get_source_type", {"service_name": "big_query"})).structured_content
    assert data is not None
    location = next(field for field in data["fields"] if field["id"] == "location")
    assert "US" in location["possible_values"]
    assert data["example_credentials"]["location"] in location["possible_values"]


async def test_unknown_source_type(client: Client) -> None:
    text = await call_error(client, "get_source_type", {"service_name": "oracle_db"})
    assert "no source type named 'oracle_db'" in text
    assert "list_source_types" in text


async def test_list_source_tables_counts_schemas_over_all_matches(client: Client, sandbox: Sandbox) -> None:
    source = sandbox.workspace.sources[1]
    tables = [d["name"] for d in source["data_sources"] if d["type"] == "table"]
    result = await call_ok(client, "list_source_tables", {"source_id": 1, "limit": 50})
    data = result.structured_content
    assert data is not None
    assert data["total"] == len(tables)
    expected = Counter(name.split(".")[0] for name in tables)
    assert data["by_schema"] == dict(expected.most_common(20))
    assert len(data["tables"]) == 50
    assert data["next_offset"] == 50
    assert set(data["tables"][0]) == {"table_schema", "table_name"}
    assert wire_bytes(result) <= 24 * 1024


async def test_list_source_tables_search_and_offsets(client: Client, sandbox: Sandbox) -> None:
    source = sandbox.workspace.sources[1]
    orders = sorted(
        d["name"] for d in source["data_sources"] if d["type"] == "table" and "orders" in d["name"]
    )
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        result = await call_ok(
            client, "list_source_tables", {"source_id": 1, "search": "ORDERS", "offset": offset}
        )
        data = result.structured_content
        assert data is not None
        assert data["total"] == len(orders)
        seen.extend(f"{t['table_schema']}.{t['table_name']}" for t in data["tables"])
        offset = data["next_offset"]
    assert sorted(seen) == orders
    searches = [r for r in sandbox.workspace.requests if r.path.endswith("/sources/1/tables")]
    assert all("search=ORDERS" in r.query for r in searches)


async def test_list_source_tables_of_an_unknown_source(client: Client) -> None:
    text = await call_error(client, "list_source_tables", {"source_id": 424242})
    assert "No source with id 424242" in text


async def test_a_small_cap_cuts_list_pages_at_a_whole_item(api_version: str) -> None:
    with running_sandbox(api_version, size=300) as sandbox:
        async with Client(build_server(sandbox.settings(max_result_bytes=4000))) as client:
            result = await call_ok(client, "list_sources", {"limit": 100})
            assert wire_bytes(result) <= 4000
            data = result.structured_content
            assert data is not None
            assert 0 < len(data["sources"]) < 100
            assert data["next_offset"] == len(data["sources"])
            assert "size cap cut this page" in result_text(result)
            tables = await call_ok(client, "list_source_tables", {"source_id": 1, "limit": 100})
            assert wire_bytes(tables) <= 4000
            assert tables.structured_content is not None
            assert tables.structured_content["next_offset"] == len(tables.structured_content["tables"])


async def test_limit_100_stays_under_the_default_cap_with_long_names(api_version: str) -> None:
    with running_sandbox(api_version, size=500) as sandbox:
        for source in sandbox.workspace.sources.values():
            source["name"] = "\u00e9" * 300
            source["label"] = "L" * 300
        async with Client(build_server(sandbox.settings())) as client:
            result = await call_ok(client, "list_sources", {"limit": 100})
        assert wire_bytes(result) <= 24 * 1024
        assert result.structured_content is not None
        assert result.structured_content["next_offset"] == len(result.structured_content["sources"])


async def test_get_source_with_thousands_of_tables_and_models_stays_small(
    client: Client, sandbox: Sandbox
) -> None:
    source = sandbox.workspace.sources[1]
    source["data_sources"] = source["data_sources"] + [
        {"id": 90000 + n, "type": "model", "name": f"Model {n} " + "m" * 200} for n in range(5000)
    ]
    result = await call_ok(client, "get_source", {"source_id": 1})
    assert wire_bytes(result) < 8 * 1024
    assert result.structured_content is not None
    assert result.structured_content["data_sources"]["by_kind"]["model"] >= 5000


async def test_a_source_with_huge_details_is_shortened_to_fit(client: Client, sandbox: Sandbox) -> None:
    source = sandbox.workspace.sources[2]
    source["connection_details"] = {f"setting_{n}": "v" * 900 for n in range(60)}
    result = await call_ok(client, "get_source", {"source_id": 2})
    assert wire_bytes(result) <= 24 * 1024
    assert result.structured_content is not None
    details = result.structured_content["connection_details"]
    assert details["…"].endswith("more fields not shown")
    assert all(len(value) < 900 for value in details.values())


async def test_the_last_guard_refuses_a_result_over_the_cap(sandbox: Sandbox) -> None:
    async with Client(build_server(sandbox.settings(max_result_bytes=300))) as client:
        text = await call_error(client, "get_source_type", {"service_name": "snowflake"})
    assert "over the 300-byte cap" in text
    assert "Ask for less" in text
