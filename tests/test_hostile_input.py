"""Hostile arguments, from any JSON at all to schema-shaped values with hostile contents.

A model (or whoever steers it) can send anything. Whatever it sends, the server must answer
with a result or a short tool error, never crash, never build a Census request outside the
API's paths and query keys, never report a write as failed when it took effect, and keep
serving afterwards.
"""

from __future__ import annotations

import json
import operator
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.types import CallToolResult

from census_mcp.sandbox.app import FIRST_REFRESH_KEY, RequestRecord
from census_mcp.sandbox.source_types import SOURCE_TYPES
from census_mcp.server import result_text
from tests.conftest import Sandbox
from tests.helpers import call, call_ok, wire_bytes
from tests.test_contract import EXPECTED
from tests.test_stdio import _environment

pytestmark = pytest.mark.anyio

# Ids are >= 1, so a path segment of 0 or with a leading zero would mean an id escaped validation.
# Paths under the API version's prefix (/api/v1 or /api/v2).
API_PATH = re.compile(
    r"^/(sources(/[1-9][0-9]*(/(refresh_tables|refresh_tables_status|tables))?)?"
    r"|source_types(/[a-z][a-z0-9_]{0,63})?)$"
)
METHODS = {
    "/sources": {"GET", "POST"},
    "/sources/N": {"GET", "PATCH", "DELETE"},
    "/sources/N/refresh_tables": {"POST"},
}
QUERY_KEYS = frozenset({"page", "per_page", "order", "refresh_key", "search"})
MAX_ERROR_CHARS = 4096
CAP_BYTES = 24 * 1024
EXAMPLES = 200

# ------------------------------------------------------------------ strategies

_SPECIAL_STRINGS = [
    "",
    " ",
    "0",
    "-1",
    "1/../../x",
    "1?x=2",
    "\uff11",
    "../sources",
    "snowflake?x=1",
    "%2e%2e%2f",
    "a\x00b",
    "\u202eevil\u202c",
    "\r\nX-Injected: 1",
    "#frag",
    "&page=2",
    "null",
    "{}",
    "\ufeff",
    "\U0001d54a\U0010ffff",
    "'; DROP TABLE sources; --",
]
_EDGE_INTS = [0, -1, 1, 2, 2**31, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, -(10**30)]
_FIELD_IDS = sorted(
    {field["id"] for kind in SOURCE_TYPES.values() for field in kind["configuration_fields"]["fields"]}
)

huge_strings = st.builds(
    operator.mul, st.sampled_from(["x", "é", "/", "\u202e", "\x00", "9"]), st.integers(4_000, 100_000)
)
short_strings = st.text(max_size=40) | st.sampled_from(_SPECIAL_STRINGS)
# A lone surrogate only as a value: the SDK's client cannot encode one in an object key at all.
hostile_strings = short_strings | short_strings | huge_strings | st.just("\ud800 lone surrogate")
hostile_numbers = (
    st.sampled_from(_EDGE_INTS) | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
)
scalars = st.none() | st.booleans() | hostile_numbers | hostile_strings
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(short_strings, children, max_size=4),
    max_leaves=8,
)


def arbitrary_arguments(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Any JSON object, keyed mostly by real argument names so that wrong types get tested."""
    keys = st.sampled_from(names) | short_strings
    return st.dictionaries(keys, json_values, max_size=5)


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int) -> st.SearchStrategy[Any]:
    """`common` about `odds` times in `odds + 1`, else `rare`."""
    return st.sampled_from([True] * odds + [False]).flatmap(lambda usual: common if usual else rare)


def _valid_integer(name: str, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = prop.get("minimum"), prop.get("maximum")
    within = [
        value for value in _EDGE_INTS if (low is None or value >= low) and (high is None or value <= high)
    ]
    # Small values hit the sandbox's sources (ids 1-60) and pages; refresh keys start high.
    start = FIRST_REFRESH_KEY if name == "refresh_key" else (low if low is not None else 0)
    near = st.integers(start, start + 70 if high is None else min(high, start + 70))
    return near | near | st.integers(min_value=low, max_value=high) | st.sampled_from(within)


def _valid_string(prop: dict[str, Any], names: list[str]) -> st.SearchStrategy[Any]:
    if "pattern" in prop:
        return st.from_regex(prop["pattern"], fullmatch=True) | st.sampled_from(sorted(SOURCE_TYPES))
    sized = st.text(min_size=prop.get("minLength", 0), max_size=prop.get("maxLength", 200))
    # Real names too, so that an exact confirm_name (and a real delete) is sometimes drawn.
    return sized | st.sampled_from(names) | st.sampled_from(_SPECIAL_STRINGS[1:])


def _credentials() -> st.SearchStrategy[dict[str, Any]]:
    """Every field of a real source type, some with hostile values, or a loose mix of keys and values."""

    def full_set(kind: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        plausible = {"integer": st.integers(1, 65535), "boolean": st.booleans()}
        values = {
            field["id"]: st.sampled_from(field["possible_values"])
            if field["possible_values"]
            else mostly(plausible.get(field["type"], st.text(min_size=1, max_size=30)), scalars, 3)
            for field in kind["configuration_fields"]["fields"]
        }
        return st.fixed_dictionaries(values)

    loose = st.dictionaries(st.sampled_from(_FIELD_IDS) | short_strings, json_values, min_size=1, max_size=8)
    return st.sampled_from(list(SOURCE_TYPES.values())).flatmap(full_set) | loose


def _near_valid_value(name: str, prop: dict[str, Any], names: list[str]) -> st.SearchStrategy[Any]:
    kind = prop.get("type")
    valid: st.SearchStrategy[Any]
    if "enum" in prop:
        valid = st.sampled_from(prop["enum"])
    elif kind == "integer":
        valid = _valid_integer(name, prop)
    elif kind == "string":
        valid = _valid_string(prop, names)
    elif kind == "boolean":
        valid = st.booleans()
    else:
        valid = _credentials()
    return mostly(valid, json_values, 6)


def near_valid_arguments(schema: dict[str, Any], names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """The schema's keys (required ones nearly always) with valid or hostile values, rarely an unknown key.

    Most calls pass validation, so that hostile values reach Census and its answers come back.
    """
    properties: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    chosen = {
        name: mostly(_near_valid_value(name, prop, names).map(lambda value: [value]), st.just([]), 12)
        if name in required
        else st.lists(_near_valid_value(name, prop, names), max_size=1)
        for name, prop in properties.items()
    }
    unknown = mostly(st.just({}), st.dictionaries(short_strings, json_values, min_size=1, max_size=1), 12)
    return st.tuples(st.fixed_dictionaries(chosen), unknown).map(
        lambda drawn: drawn[1] | {name: given[0] for name, given in drawn[0].items() if given}
    )


# ------------------------------------------------------------------ the checks every call must pass


def workspace_state(sandbox: Sandbox) -> str:
    """All the sandbox holds that a tool can change, as one comparable string."""
    workspace = sandbox.workspace
    return json.dumps([workspace.sources, sorted(workspace.refresh_jobs)], sort_keys=True, default=str)


def check_request(request: RequestRecord, prefix: str) -> None:
    """The request is on one of the API's paths of the version in use (`prefix`), with a method it takes
    and a clean query."""
    assert request.path.startswith(prefix + "/"), f"off the API version: {request.method} {request.path!r}"
    path = request.path.removeprefix(prefix)
    assert API_PATH.fullmatch(path), f"off the API's paths: {request.method} {request.path!r}"
    shape = re.sub(r"/[0-9]+", "/N", path)
    assert request.method in METHODS.get(shape, {"GET"}), f"{request.method} {request.path}"
    if request.query:
        assert request.query.isascii(), request.query
        pairs = parse_qsl(request.query, keep_blank_values=True, strict_parsing=True, errors="strict")
        keys = [key for key, _ in pairs]
        assert set(keys) <= QUERY_KEYS, f"unknown query keys in {request.query!r}"
        assert len(keys) == len(set(keys)), f"a query key given twice: {request.query!r}"


def check_result(result: CallToolResult) -> None:
    """An error is short advice in text; a success fits the cap and carries its structured content."""
    text = result_text(result)
    if result.is_error:
        assert result.content, "an error without content"
        assert all(block.type == "text" for block in result.content)
        assert text.strip(), "an empty error"
        assert "Traceback" not in text, text
        assert "unexpectedly" not in text, f"a tool crashed: {text}"
        assert len(text) < MAX_ERROR_CHARS, f"a {len(text)}-character error: {text[:300]}..."
        assert result.structured_content is None
    else:
        assert result.structured_content is not None, text[:300]
        assert wire_bytes(result) <= CAP_BYTES


async def checked_call(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]
) -> CallToolResult:
    """One call, then every property: the result, the requests it caused, what it did to the workspace."""
    seen = len(sandbox.workspace.requests)
    names_before = {key: source["name"] for key, source in sandbox.workspace.sources.items()}
    state_before = workspace_state(sandbox)
    result = await client.call_tool(tool, arguments)  # must neither raise nor answer with a protocol error
    check_result(result)
    for request in sandbox.workspace.requests[seen:]:
        check_request(request, sandbox.prefix)
    if result.is_error:
        assert workspace_state(sandbox) == state_before, f"{tool} reported an error but changed the workspace"
    elif tool == "delete_source":
        assert result.structured_content is not None  # check_result made sure
        deleted: int = result.structured_content["id"]
        assert arguments.get("confirm_name") == names_before.get(deleted), "deleted without the exact name"
        assert deleted not in sandbox.workspace.sources
    return result


async def fuzz(
    client: Client, sandbox: Sandbox, strategy: Callable[[dict[str, dict[str, Any]]], st.SearchStrategy[Any]]
) -> None:
    """Run hypothesis in a worker thread, each example a call on this event loop's one client.

    One server and sandbox serve every example (the MCP client is bound to this loop), and
    the test goes on after the run, so it can check that the server still serves.
    """
    listed = await client.list_tools()
    schemas = {tool.name: tool.input_schema for tool in listed.tools}
    assert sorted(schemas) == sorted(EXPECTED)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(call_=strategy(schemas))
    def run(call_: tuple[str, dict[str, Any]]) -> None:
        anyio.from_thread.run(checked_call, client, sandbox, *call_)

    await anyio.to_thread.run_sync(run)
    await call_ok(client, "list_sources", {"refresh": True})


# ------------------------------------------------------------------ properties


async def test_any_json_arguments(client: Client, sandbox: Sandbox) -> None:
    """Wrong types, huge and odd strings, huge ids, nesting, unknown keys: each is answered cleanly."""

    def strategy(schemas: dict[str, dict[str, Any]]) -> st.SearchStrategy[Any]:
        names = sorted({name for schema in schemas.values() for name in schema["properties"]})
        return st.tuples(st.sampled_from(sorted(schemas)), arbitrary_arguments(names))

    await fuzz(client, sandbox, strategy)


async def test_near_valid_arguments(client: Client, sandbox: Sandbox) -> None:
    """Schema-shaped arguments with hostile values, so that many calls reach Census and write to it."""
    names = sorted(source["name"] for source in sandbox.workspace.sources.values())

    def strategy(schemas: dict[str, dict[str, Any]]) -> st.SearchStrategy[Any]:
        return st.sampled_from(sorted(schemas)).flatmap(
            lambda tool: st.tuples(st.just(tool), near_valid_arguments(schemas[tool], names))
        )

    await fuzz(client, sandbox, strategy)
    assert any(request.method != "GET" for request in sandbox.workspace.requests), "no write reached Census"


# ------------------------------------------------------------------ the worst cases, pinned


@pytest.mark.parametrize(
    "source_id", ["1/../../x", "1?x=2", -1, 0, True, 1.5, "\uff11", None, [1], {"id": 1}]
)
async def test_ids_that_are_not_positive_integers_never_reach_census(
    client: Client, sandbox: Sandbox, source_id: Any
) -> None:
    """`true` is not source #1: update_source has no name guard, so a stray boolean would overwrite it."""
    for tool, extra in [("get_source", {}), ("update_source", {"label": "hijacked"})]:
        result = await checked_call(client, sandbox, tool, {"source_id": source_id, **extra})
        assert result.is_error, f"{tool} accepted source_id={source_id!r}: {result_text(result)[:200]}"
        assert f"Invalid arguments for {tool}: source_id" in result_text(result)
    assert sandbox.workspace.requests == []
    assert sandbox.workspace.sources[1]["label"] != "hijacked"


# The largest id taken (larger ones are refused before any request: test_source_tools), and one past
# where a float would round it.
@pytest.mark.parametrize("source_id", [2**63 - 1, 2**53 + 1])
async def test_huge_ids_are_sent_as_plain_digits(client: Client, sandbox: Sandbox, source_id: int) -> None:
    result = await checked_call(client, sandbox, "get_source", {"source_id": source_id})
    assert result.is_error
    assert f"No source with id {source_id} exists" in result_text(result)
    paths = [request.path for request in sandbox.workspace.requests]
    assert paths == [f"{sandbox.prefix}/sources/{source_id}"]


@pytest.mark.parametrize(
    "service_name", ["../sources", "snowflake?x=1", "Snow Flake", "a" * 10_000, "a" * 65]
)
async def test_service_names_outside_the_pattern_are_refused(
    client: Client, sandbox: Sandbox, service_name: str
) -> None:
    result = await checked_call(client, sandbox, "get_source_type", {"service_name": service_name})
    assert result.is_error
    # `service_name` is the old spelling of `type`, and is checked as such.
    assert "Invalid arguments for get_source_type: type" in result_text(result)
    assert service_name not in result_text(result)
    assert sandbox.workspace.requests == []


async def test_a_search_is_sent_as_one_encoded_value(client: Client, sandbox: Sandbox) -> None:
    """`&page=2#x` must not add a query key nor cut the query at a fragment."""
    search = "&page=2#x"
    await call_ok(client, "list_source_tables", {"source_id": 2, "search": search})
    sent = [request for request in sandbox.workspace.requests if request.path.endswith("/tables")]
    assert sent
    for request in sent:
        check_request(request, sandbox.prefix)
        assert "search=%26page%3D2%23x" in request.query
        pairs = parse_qsl(request.query, strict_parsing=True)
        assert [value for key, value in pairs if key == "search"] == [search]
        assert sorted(key for key, _ in pairs) == ["page", "per_page", "search"]


async def test_delete_needs_the_exact_name(client: Client, sandbox: Sandbox) -> None:
    """Near misses of the real name (case, spaces, invisible characters, prefixes) delete nothing."""
    name = sandbox.workspace.sources[2]["name"]
    near_misses = {
        name.upper(),
        name.lower(),
        f" {name}",
        f"{name} ",
        f"{name}\x00",
        f"\u202e{name}",
        name[:-1],
        "*",
    }
    for confirm_name in sorted(near_misses - {name}):
        result = await checked_call(
            client, sandbox, "delete_source", {"source_id": 2, "confirm_name": confirm_name}
        )
        assert result.is_error
        assert "Nothing was deleted" in result_text(result)
    assert 2 in sandbox.workspace.sources
    assert all(request.method != "DELETE" for request in sandbox.workspace.requests)
    await checked_call(client, sandbox, "delete_source", {"source_id": 2, "confirm_name": name})
    assert 2 not in sandbox.workspace.sources


POSTGRES = {"hostname": "db.example.com", "port": 5432, "user": "u", "password": "pw-1234", "database": "d"}


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (
            "create_source",
            {"type": "postgres", "credentials": {**POSTGRES, "hostname": "h" * 100_000}},
        ),
        ("update_source", {"source_id": 2, "credentials": {f"k{n}": "v" * 1_000 for n in range(40)}}),
    ],
)
async def test_a_write_reported_as_failed_changed_nothing(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]
) -> None:
    """A model told a create failed creates again: an error must mean nothing was written.

    The values pass the schema and Census accepts them; whether the server refuses them first
    or reports the write as done, it must not say "failed" about a write that took effect.
    """
    result = await call(client, tool, arguments)
    check_result(result)
    if result.is_error:
        writes = [request for request in sandbox.workspace.requests if request.method != "GET"]
        assert writes == [], f"{tool} wrote to Census, then answered: {result_text(result)}"


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        (
            "create_source",
            {"type": "postgres", "credentials": {**POSTGRES, "hostname": "db-\ud800.example.com"}},
        ),
        ("update_source", {"source_id": 2, "credentials": {"password": "pw-\udfff-1234"}}),
    ],
)
async def test_text_that_is_not_unicode_is_refused_cleanly(
    client: Client, sandbox: Sandbox, tool: str, arguments: dict[str, Any]
) -> None:
    """A lone surrogate arrives in-process (`census-mcp call` reads its JSON with json.loads) but cannot
    be sent to Census: the answer must be an error about the argument, not a crashed tool."""
    result = await checked_call(client, sandbox, tool, arguments)
    assert result.is_error
    assert sandbox.workspace.requests == []


async def test_numbers_json_cannot_carry_are_refused_over_stdio() -> None:
    """The SDK's stdio reader accepts NaN and Infinity, which no JSON body to Census can hold: a client
    that sends them (Python's json.dumps does) gets an error about the argument, not a crashed tool."""
    call_with_nan = (
        '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "create_source", '
        '"arguments": {"type": "postgres", "credentials": {"hostname": "h", "port": NaN, "user": "u", '
        '"password": "pw-1234", "database": "d"}}}}'
    )
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    command = [sys.executable, "-m", "census_mcp", "--sandbox"]
    async with await anyio.open_process(command, env=_environment(), stderr=subprocess.DEVNULL) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)

        async def answer_to(request_id: int) -> dict[str, Any]:
            with anyio.fail_after(30):
                while True:
                    message = json.loads(await lines.receive_until(b"\n", 1_000_000))
                    if message.get("id") == request_id:
                        return dict(message)

        await process.stdin.send(f"{json.dumps(initialize)}\n".encode())
        assert "result" in await answer_to(1)
        await process.stdin.send(f"{json.dumps(initialized)}\n{call_with_nan}\n".encode())
        answer = await answer_to(2)
        await process.stdin.aclose()
    assert "result" in answer, answer  # a tool error, not a protocol error
    result = CallToolResult.model_validate(answer["result"])
    assert result.is_error
    check_result(result)
