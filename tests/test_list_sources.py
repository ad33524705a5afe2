"""list_sources against the loopback sandbox: totals, filters, order, paging, size."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from mcp import Client

from census_mcp.server import build_server, result_text
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call_error, call_ok, wire_bytes

pytestmark = pytest.mark.anyio


def _status(source: dict[str, Any]) -> str:
    succeeded = source["last_test_succeeded"]
    return "untested" if succeeded is None else ("passed" if succeeded else "failed")


def _newest_first(sources: dict[int, dict[str, Any]]) -> list[int]:
    return [s["id"] for s in sorted(sources.values(), key=lambda s: (s["created_at"], s["id"]), reverse=True)]


async def test_default_call_counts_the_whole_workspace(client: Client, sandbox: Sandbox) -> None:
    sources = sandbox.workspace.sources
    result = await call_ok(client, "list_sources")
    data = result.structured_content
    assert data is not None
    assert data["total"] == data["workspace_total"] == len(sources)
    assert data["counts"]["by_type"] == dict(Counter(s["type"] for s in sources.values()))
    assert data["counts"]["by_test_status"] == {
        status: sum(_status(s) == status for s in sources.values())
        for status in ("passed", "failed", "untested")
    }
    assert [item["id"] for item in data["sources"]] == _newest_first(sources)[:25]
    fields = {"id", "name", "label", "type", "last_test_succeeded", "last_tested_at"}
    assert set(data["sources"][0]) == fields | ({"group_id"} if sandbox.api_version == "v2" else set())
    assert data["offset"] == 0
    assert data["next_offset"] == 25
    text = result_text(result)
    first_line = text.splitlines()[0]
    assert f"{len(sources)} of {len(sources)} sources match" in first_line
    # On v2 each group on the page heads its rows.
    groups = len({item["group_id"] for item in data["sources"]}) if sandbox.api_version == "v2" else 0
    assert len(text.splitlines()) == 1 + 1 + groups + 25 + 1 + 1
    assert text.splitlines()[-2] == f"{len(sources) - 25} more: call again with offset=25."
    assert text.splitlines()[-1].startswith("Read from Census at ")
    assert data["fetched_at"].endswith("Z")


async def test_failed_filter_names_every_failing_source(client: Client, sandbox: Sandbox) -> None:
    failing = [s for s in sandbox.workspace.sources.values() if s["last_test_succeeded"] is False]
    assert failing, "the seed must include failing sources"
    result = await call_ok(client, "list_sources", {"test_status": "failed", "limit": 100})
    data = result.structured_content
    assert data is not None
    assert data["total"] == len(failing)
    assert {item["id"] for item in data["sources"]} == {s["id"] for s in failing}
    assert all(item["last_test_succeeded"] is False for item in data["sources"])
    assert data["next_offset"] is None
    text = result_text(result)
    for source in failing:
        assert f"#{source['id']} " in text
    assert "last test failed" in text.splitlines()[0]


async def test_type_and_name_filters_combine(client: Client, sandbox: Sandbox) -> None:
    sources = list(sandbox.workspace.sources.values())
    target = next(s for s in sources if s["type"] == "snowflake" and s["label"])
    needle = target["label"][1:5].upper()
    expected = {
        s["id"]
        for s in sources
        if s["type"] == "snowflake"
        and (needle.lower() in s["name"].lower() or needle.lower() in (s["label"] or "").lower())
    }
    result = await call_ok(
        client, "list_sources", {"type": "snowflake", "name_contains": needle, "limit": 100}
    )
    data = result.structured_content
    assert data is not None
    assert {item["id"] for item in data["sources"]} == expected
    assert target["id"] in expected
    assert data["counts"]["by_type"] == {"snowflake": len(expected)}
    assert data["workspace_total"] == len(sources)


async def test_name_contains_finds_a_source_by_its_name_or_its_label_alone(
    client: Client, sandbox: Sandbox
) -> None:
    sources = list(sandbox.workspace.sources.values())
    by_label = next(s for s in sources if s["label"] and s["label"].casefold() not in s["name"].casefold())
    by_name = next(s for s in sources if s["name"].casefold() not in (s["label"] or "").casefold())
    for target, needle in ((by_label, by_label["label"].upper()), (by_name, by_name["name"].upper())):
        result = await call_ok(client, "list_sources", {"name_contains": needle, "limit": 100})
        assert result.structured_content is not None
        assert target["id"] in {item["id"] for item in result.structured_content["sources"]}, needle


async def test_the_headline_names_every_filter_and_only_those(client: Client, sandbox: Sandbox) -> None:
    group = f"group {sandbox.group_id}, " if sandbox.group_id else ""
    filters = {"type": "snowflake", "name_contains": "prod", "test_status": "failed"}
    if sandbox.group_id:
        filters["group_id"] = sandbox.group_id
    filtered = result_text(await call_ok(client, "list_sources", filters)).splitlines()[0]
    everything = result_text(await call_ok(client, "list_sources")).splitlines()[0]
    assert f'sources match (type=snowflake, {group}name contains "prod", last test failed). ' in filtered
    assert f"{len(sandbox.workspace.sources)} sources match. Last test" in everything


async def test_untested_and_unknown_type(client: Client, sandbox: Sandbox) -> None:
    untested = await call_ok(client, "list_sources", {"test_status": "untested", "limit": 100})
    assert untested.structured_content is not None
    assert untested.structured_content["total"] == sum(
        s["last_tested_at"] is None for s in sandbox.workspace.sources.values()
    )
    none = await call_ok(client, "list_sources", {"type": "no_such_type"})
    assert none.structured_content is not None
    assert none.structured_content["total"] == 0
    assert none.structured_content["sources"] == []
    assert none.structured_content["next_offset"] is None


async def test_order_asc_is_oldest_first(client: Client, sandbox: Sandbox) -> None:
    result = await call_ok(client, "list_sources", {"order": "asc", "limit": 10})
    assert result.structured_content is not None
    ids = [item["id"] for item in result.structured_content["sources"]]
    assert ids == list(reversed(_newest_first(sandbox.workspace.sources)))[:10]


@pytest.mark.parametrize("cache_seconds", [30.0, 0.0])
async def test_walking_offsets_visits_each_source_once(api_version: str, cache_seconds: float) -> None:
    with running_sandbox(api_version, size=260) as sandbox:
        async with Client(build_server(sandbox.settings(cache_seconds=cache_seconds))) as client:
            seen: list[int] = []
            offset: int | None = 0
            calls = 0
            while offset is not None:
                calls += 1
                result = await call_ok(client, "list_sources", {"limit": 100, "offset": offset})
                data = result.structured_content
                assert data is not None
                assert data["total"] == 260
                seen.extend(item["id"] for item in data["sources"])
                offset = data["next_offset"]
        assert seen == _newest_first(sandbox.workspace.sources)
        pages = [r for r in sandbox.workspace.requests if r.path.endswith("/sources")]
        # At least three list calls (more where the size cap cuts a page); the cache makes them one
        # read of the workspace, and each read is 3 pages of 100.
        assert calls >= 3
        assert len(pages) == 3 * (1 if cache_seconds else calls)
        assert all("per_page=100" in r.query for r in pages)


async def test_offset_past_the_end(client: Client, sandbox: Sandbox) -> None:
    result = await call_ok(client, "list_sources", {"offset": 10_000})
    assert result.structured_content is not None
    assert result.structured_content["sources"] == []
    assert result.structured_content["next_offset"] is None
    assert "No sources at offset 10000" in result_text(result)


async def test_default_limit_stays_under_8kb_however_large_the_workspace(api_version: str) -> None:
    with running_sandbox(api_version, size=1000) as sandbox:
        for source in sandbox.workspace.sources.values():
            source["name"] = "N" * 400 + f"-{source['id']}"
            source["label"] = "L" * 300
        async with Client(build_server(sandbox.settings())) as client:
            result = await call_ok(client, "list_sources")
            assert wire_bytes(result) <= 8 * 1024
            data = result.structured_content
            assert data is not None
            assert data["total"] == 1000
            assert len(data["counts"]["by_type"]) >= 5
            assert 0 < len(data["sources"]) <= 25
            assert data["next_offset"] == len(data["sources"])
            assert all(len(item["name"]) <= 80 for item in data["sources"])


async def test_a_page_too_big_for_its_budget_is_cut_at_a_whole_item(api_version: str) -> None:
    with running_sandbox(api_version, size=120) as sandbox:
        for source in sandbox.workspace.sources.values():
            source["label"] = "\u00e9" * 80  # wide characters: two bytes each in UTF-8
        async with Client(build_server(sandbox.settings())) as client:
            result = await call_ok(client, "list_sources", {"limit": 25})
            data = result.structured_content
            assert data is not None
            shown = len(data["sources"])
            assert shown < 25
            assert wire_bytes(result) <= 8 * 1024
            assert data["next_offset"] == shown
            assert "size cap" in result_text(result)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"test_status": "broken"}, "test_status"),
        ({"order": "random"}, "order"),
        ({"type": "Snowflake/../x"}, "type"),
        # A name the caller made up comes back quoted, as data.
        ({"status": "failed"}, '"status": not an argument of this tool'),
    ],
)
async def test_invalid_arguments_are_refused_before_any_request(
    client: Client, sandbox: Sandbox, arguments: dict[str, Any], complaint: str
) -> None:
    text = await call_error(client, "list_sources", arguments)
    assert text.startswith("Invalid arguments for list_sources")
    assert complaint in text
    assert "Traceback" not in text
    assert sandbox.workspace.requests == []
