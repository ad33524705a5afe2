"""The command line: `call` runs the main job through the real server; `--help` documents everything."""

from __future__ import annotations

import json
import re
import shlex
import socket
import stat
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import pytest

from census_mcp.census.api import V1_RETIREMENT
from census_mcp.doctor import examine
from census_mcp.sandbox import GROUPS
from census_mcp.sandbox.seed import SECRET_MARKER
from census_mcp.settings import OPTIONS, Settings
from tests.conftest import Sandbox
from tests.test_contract import EXPECTED
from tests.test_real_clients import NODE_BIN, ROOT
from tests.test_stdio import _console_script, _environment


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_console_script(), *args], env=_environment(**env), capture_output=True, text=True, timeout=60
    )


def test_call_on_the_sandbox_names_the_failing_sources() -> None:
    done = _run("--sandbox", "call", "list_sources", '{"test_status": "failed", "limit": 100}', "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["isError"] is False
    text, data = document["text"], document["structuredContent"]
    assert data["total"] == len(data["sources"]) > 0
    assert f"{data['total']} of 60 sources match (last test failed)" in text
    for item in data["sources"]:
        assert f"#{item['id']} {json.dumps(item['name'])}" in text
    assert len(done.stdout.encode()) < 16 * 1024


def test_call_reports_a_tool_error_with_exit_code_1() -> None:
    done = _run("--sandbox", "call", "get_source", '{"source_id": 99999}')
    assert done.returncode == 1
    assert "No source with id 99999" in done.stderr


@pytest.mark.parametrize("bad", ["{oops", "[1, 2]"])
def test_call_refuses_arguments_that_are_not_a_json_object(bad: str) -> None:
    done = _run("--sandbox", "call", "list_sources", bad)
    assert done.returncode == 2
    assert "JSON" in done.stderr
    # With --json, a pipeline into jq sees the mistake too.
    as_json = _run("--sandbox", "call", "list_sources", bad, "--json")
    assert as_json.returncode == 2
    document = json.loads(as_json.stdout)
    assert document["isError"] is True
    assert "JSON" in document["text"]
    assert document["structuredContent"] is None


def test_sandbox_size_and_env_switch() -> None:
    done = _run("call", "list_sources", "--json", CENSUS_MCP_SANDBOX="1", CENSUS_MCP_SANDBOX_SIZE="250")
    assert done.returncode == 0, done.stderr
    assert "250 of 250 sources match" in done.stdout


def test_help_documents_every_flag_and_its_environment_variable() -> None:
    done = _run("--help")
    assert done.returncode == 0
    flat = " ".join(done.stdout.split())
    for option in OPTIONS:
        assert option.flag in flat
        assert option.env in flat
    assert "call TOOL" in flat


# ------------------------------------------------------------------ the first hour


def _sandboxed(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run("--sandbox", *args, CENSUS_MCP_SANDBOX_STATE=str(state))


def _json_call(state: Path, tool: str, arguments: dict[str, object], *options: str) -> dict[str, Any]:
    done = _sandboxed(state, "call", tool, json.dumps(arguments), "--json", *options)
    document: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == (1 if document["isError"] else 0)
    return document


def test_the_sandbox_keeps_a_create_get_update_delete_trial_across_calls(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    credentials = {"account": "a", "user": "u", "warehouse": "w", "password": "p"}
    created = _json_call(state, "create_source", {"type": "snowflake", "credentials": credentials})
    source_id = created["structuredContent"]["id"]
    assert source_id == 61
    got = _json_call(state, "get_source", {"source_id": source_id})
    assert got["structuredContent"]["type"] == "snowflake"
    updated = _json_call(state, "update_source", {"source_id": source_id, "label": "Trial"})
    assert updated["structuredContent"]["label"] == "Trial"
    job = _json_call(state, "refresh_source_tables", {"source_id": source_id})["structuredContent"]
    status = _json_call(
        state, "get_refresh_tables_status", {"source_id": source_id, "refresh_key": job["refresh_key"]}
    )
    assert status["isError"] is False, status["text"]
    deleted = _json_call(state, "delete_source", {"source_id": source_id, "confirm_name": "Trial"})
    assert deleted["structuredContent"] == {"deleted": True, "id": source_id, "name": "Trial"}
    gone = _json_call(state, "get_source", {"source_id": source_id})
    assert gone["isError"] is True
    assert f"No source with id {source_id}" in gone["text"]
    assert json.loads(state.read_text())["next_id"] == source_id + 1


def test_sandbox_reset_starts_afresh(tmp_path: Path) -> None:
    state = tmp_path / "kept" / "sandbox.json"
    credentials = {"account": "a", "user": "u", "warehouse": "w", "password": "p"}
    _json_call(state, "create_source", {"type": "snowflake", "credentials": credentials})
    assert _json_call(state, "list_sources", {})["structuredContent"]["workspace_total"] == 61
    reset = _sandboxed(state, "sandbox-reset")
    assert reset.returncode == 0
    assert "starts afresh" in reset.stdout
    assert not state.exists()
    assert _json_call(state, "list_sources", {})["structuredContent"]["workspace_total"] == 60
    off = _run("--sandbox", "call", "get_source", '{"source_id": 61}', CENSUS_MCP_SANDBOX_STATE="off")
    assert off.returncode == 1


@pytest.mark.parametrize("api_version", ["v1", "v2"])
def test_the_kept_sandbox_is_private_holds_no_credential_and_finds_a_new_sources_tables(
    api_version: str, tmp_path: Path
) -> None:
    state = tmp_path / "kept" / "sandbox.json"
    version = ("--api-version", api_version, "--group-id", GROUPS[0]) if api_version == "v2" else ()
    credentials = {"account": "a", "user": "u", "warehouse": "w", "password": "hunter2"}
    created = _json_call(state, "create_source", {"type": "snowflake", "credentials": credentials}, *version)
    source_id = created["structuredContent"]["id"]
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    kept = state.read_text()
    assert "hunter2" not in kept
    assert json.loads(kept)["sources"][str(source_id)]["connection_details"]["password"] == "[redacted]"
    # A seeded source's secrets are masked too, and what get_source shows is as before.
    assert SECRET_MARKER not in kept
    shown = _json_call(state, "get_source", {"source_id": source_id}, *version)["structuredContent"]
    assert shown["connection_details"]["password"] == "[redacted]"
    assert shown["connection_details"]["account"] == "a"
    # No tables until a refresh completes, then the ones its warehouse holds.
    before = _json_call(state, "list_source_tables", {"source_id": source_id}, *version)
    assert before["structuredContent"]["total"] == 0
    refreshed = _json_call(state, "refresh_source_tables", {"source_id": source_id, "wait": True}, *version)
    assert refreshed["structuredContent"]["status"] == "completed", refreshed["text"]
    assert "list_source_tables shows the tables" in refreshed["text"]
    tables = _json_call(state, "list_source_tables", {"source_id": source_id}, *version)
    assert tables["structuredContent"]["total"] >= 5
    again = _json_call(state, "list_source_tables", {"source_id": source_id}, *version)
    assert again["structuredContent"]["tables"] == tables["structuredContent"]["tables"]
    assert "Read from the sandbox at" in tables["text"] or "read the sandbox again" in tables["text"]
    assert "Census" not in tables["text"].splitlines()[-1]


def test_a_corrupt_sandbox_state_is_moved_aside_with_a_warning(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.json"
    state.write_text('{"format": 1, "sources": [')
    done = _sandboxed(state, "call", "list_sources", '{"limit": 1}')
    assert done.returncode == 0, done.stderr
    assert "60 of 60 sources match" in done.stdout
    [aside] = tmp_path.glob("sandbox.json.corrupt-*")
    assert aside.read_text() == '{"format": 1, "sources": ['
    [warning] = [line for line in done.stderr.splitlines() if "unreadable" in line]
    assert f"The sandbox's state file {state} is unreadable (JSONDecodeError): kept as {aside}" in warning
    assert not state.exists()


def test_options_are_accepted_after_the_command() -> None:
    done = _run("call", "list_sources", '{"limit": 1}', "--sandbox", "--sandbox-size", "70", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["structuredContent"]["workspace_total"] == 70
    before_and_after = _run("--sandbox-size", "80", "call", "list_sources", "--sandbox")
    assert "of 80 sources match" in before_and_after.stdout
    listed = _run("tools", "--read-only")
    assert "delete_source" not in listed.stdout
    assert "list_sources" in listed.stdout
    # Between the tool and its arguments, and --json before the command.
    for line in (
        ("call", "list_sources", "--sandbox", '{"limit": 2}', "--json"),
        ("--json", "call", "list_sources", "--json", '{"limit": 2}', "--sandbox"),
    ):
        done = _run(*line)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["structuredContent"]["sources"]) == 2
    extra = _run("call", "list_sources", "{}", "surplus", "--sandbox")
    assert extra.returncode == 2
    assert "unrecognized arguments: surplus" in extra.stderr


def test_json_is_one_document_on_errors_too() -> None:
    done = _run("--sandbox", "call", "get_source", '{"source_id": 99999}', "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document == {"isError": True, "text": document["text"], "structuredContent": None}
    assert "No source with id 99999" in document["text"]


@pytest.mark.parametrize(
    ("base_url", "complaint"),
    [
        ("not-a-url", "must start with https://"),
        ("https://app.getcensus.com", "must end with the API's path, /api/v1 or /api/v2"),
        ("https://user:pw@app.getcensus.com/api/v1", "must not carry credentials"),
    ],
)
def test_a_base_url_no_request_could_use_is_refused_at_start_up(base_url: str, complaint: str) -> None:
    done = _run("call", "list_sources", "--token", "secret-token:x", "--base-url", base_url)
    assert done.returncode == 2
    assert "e.g. https://app.getcensus.com/api/v1." in done.stderr
    on_v2 = _run("call", "list_sources", "--token", "pat", "--api-version", "v2", "--base-url", base_url)
    assert on_v2.returncode == 2
    assert complaint in on_v2.stderr
    assert "e.g. https://app.getcensus.com/api/v2." in on_v2.stderr
    assert done.stderr.count("\n") == 1
    assert complaint in done.stderr
    assert "pw" not in done.stderr


def test_a_refused_connection_fails_at_once_naming_the_host() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _run(
        "call", "list_sources", "--token", "secret-token:x", "--base-url", f"http://127.0.0.1:{port}/api/v1"
    )
    assert done.returncode == 1
    assert f"could not connect to Census at 127.0.0.1:{port}: the connection was refused" in done.stderr
    # A wrong address does not heal: the retries stop within the 2 s given to unreachable hosts.
    over = re.search(r"Gave up after (\d+) attempts over ([\d.]+) s", done.stderr)
    assert over is not None
    assert float(over.group(2)) <= 2.0


def test_turned_off_and_unknown_tools_say_why() -> None:
    off = _run("--sandbox", "--read-only", "call", "delete_source", '{"source_id": 1, "confirm_name": "x"}')
    assert off.returncode == 1
    assert "delete_source is turned off by --read-only" in off.stderr
    excluded = _run(
        "--sandbox", "--exclude-tools", "update_source", "call", "update_source", '{"source_id": 1}'
    )
    assert "update_source is turned off by --exclude-tools" in excluded.stderr
    unknown = _run("--sandbox", "call", "get_sources", "{}")
    assert unknown.returncode == 1
    assert "No tool has that name. Did you mean get_source" in unknown.stderr
    assert "census-mcp tools" in unknown.stderr


def test_tools_describes_one_tool_and_prints_tools_list_as_json() -> None:
    described = _run("tools", "delete_source")
    assert described.returncode == 0, described.stderr
    lines = described.stdout.splitlines()
    assert lines[0].startswith("delete_source (destructive): Delete a source permanently")
    assert any(re.match(r"\s+source_id\s+integer\s+required\s+From list_sources\.", line) for line in lines)
    assert any(re.match(r"\s+confirm_name\s+string\s+required\s+The source's exact", line) for line in lines)
    example = lines[-1].strip()
    assert example.startswith("census-mcp call delete_source '")
    assert set(json.loads(example.split("'")[1])) == {"source_id", "confirm_name"}
    with_defaults = _run("tools", "list_sources").stdout
    assert re.search(r"limit\s+integer\s+default 25\s+Items per page\.", with_defaults)
    assert '"desc" | "asc"' in with_defaults
    listed = json.loads(_run("tools", "--json").stdout)
    assert [tool["name"] for tool in listed["tools"]] == EXPECTED
    assert all("inputSchema" in tool and "outputSchema" in tool for tool in listed["tools"])
    missing = _run("tools", "delete_sauce")
    assert missing.returncode == 1
    assert "Did you mean delete_source" in missing.stderr


def test_one_name_for_one_thing_and_types_and_regions_without_regard_to_case() -> None:
    new = _run("--sandbox", "call", "get_source_type", '{"type": "Snowflake"}')
    old = _run("--sandbox", "call", "get_source_type", '{"service_name": "snowflake"}')
    assert new.returncode == old.returncode == 0, new.stderr + old.stderr
    assert new.stdout == old.stdout
    assert new.stdout.startswith("Source type snowflake")
    listed = _run("--sandbox", "call", "list_sources", '{"type": "SNOWFLAKE", "limit": 1}')
    assert "(type=snowflake)" in listed.stdout
    bad = _run("--sandbox", "call", "list_sources", '{"type": "snow flake"}')
    assert "must be a source type: letters, digits and _" in bad.stderr
    assert "^[a-z]" not in bad.stderr
    absent = _run("--sandbox", "call", "list_sources", '{"type": "oracle"}')
    assert "No source in the workspace has type oracle; the types it has: snowflake" in absent.stdout
    region = _run("doctor", "--token", "secret-token:x", CENSUS_REGION="EU")
    assert "API v1 at https://app-eu.getcensus.com/api/v1" in region.stdout


def test_the_node_the_tools_run_on_satisfies_what_they_declare() -> None:
    declared = json.loads((ROOT / "node_modules/@modelcontextprotocol/inspector/package.json").read_text())
    minimum = tuple(int(part) for part in declared["engines"]["node"].removeprefix(">=").split("."))
    found = subprocess.run([str(NODE_BIN / "node"), "--version"], capture_output=True, text=True, check=True)
    assert tuple(int(part) for part in found.stdout.strip().removeprefix("v").split(".")) >= minimum


# ------------------------------------------------------------------ doctor


def test_doctor_checks_the_sandbox() -> None:
    done = _run("--sandbox", "--api-version", "v2", "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line[:4] in ("ok  ", "warn") for line in lines), lines
    assert "API v2 at http://census-sandbox.invalid/api/v2" in done.stdout
    assert "sources: 60 across every group the token can see" in done.stdout
    assert "tools: 10 on" in done.stdout
    assert "app: on, for hosts that render MCP Apps; app-only tools: list_sources_sorted" in done.stdout


@pytest.mark.anyio
async def test_doctor_checks_a_real_census_over_loopback(sandbox: Sandbox) -> None:
    done = await anyio.to_thread.run_sync(
        lambda: _run(
            "doctor",
            CENSUS_API_TOKEN=sandbox.token,
            CENSUS_API_VERSION=sandbox.api_version,
            CENSUS_API_BASE_URL=sandbox.base_url,
            CENSUS_MCP_READ_ONLY="1",
        )
    )
    assert done.returncode == 0, done.stdout
    assert "DNS: 127.0.0.1 resolves to 127.0.0.1" in done.stdout
    assert "TLS: none, plain HTTP to 127.0.0.1" in done.stdout
    assert "Census: the token was accepted" in done.stdout
    assert f"sources: {len(sandbox.workspace.sources)} " in done.stdout
    assert re.search(r"ok    clock: \d+ s (ahead of|behind) Census", done.stdout)
    assert "tools: 6 on (--read-only)" in done.stdout
    assert "app: on" in done.stdout
    assert sandbox.token not in done.stdout + done.stderr
    refused = await anyio.to_thread.run_sync(
        lambda: _run(
            "doctor",
            CENSUS_API_TOKEN="secret-token:wrong-one",
            CENSUS_API_VERSION=sandbox.api_version,
            CENSUS_API_BASE_URL=sandbox.base_url,
        )
    )
    assert refused.returncode == 1
    assert re.search(r"^FAIL  Census: Census rejected the API token \(401\)", refused.stdout, re.M)
    assert "wrong-one" not in refused.stdout + refused.stderr


def test_doctor_fails_on_a_host_that_does_not_resolve_and_without_a_token() -> None:
    done = _run("doctor", "--token", "secret-token:x", "--base-url", "https://census.invalid/api/v1")
    assert done.returncode == 1
    assert "FAIL  DNS: census.invalid does not resolve" in done.stdout
    bare = _run("doctor")
    assert bare.returncode == 1
    assert "FAIL  token: none; set CENSUS_API_TOKEN" in bare.stdout


@pytest.mark.anyio
async def test_doctor_checks_what_http_needs_and_passthrough_needs_no_token(sandbox: Sandbox) -> None:
    open_to_anyone = _run("--sandbox", "--transport", "http", "doctor")
    assert open_to_anyone.returncode == 1
    assert "FAIL  HTTP: HTTP needs auth: set CENSUS_MCP_AUTH_TOKEN" in open_to_anyone.stdout
    shared = _run(
        "--sandbox",
        "--transport",
        "http",
        "doctor",
        CENSUS_MCP_AUTH_TOKEN="a-long-shared-token-of-32-characters",
    )
    assert shared.returncode == 0, shared.stdout
    assert (
        "ok    HTTP: would serve http://127.0.0.1:8000/mcp to callers presenting the shared" in shared.stdout
    )
    passthrough = await anyio.to_thread.run_sync(
        lambda: _run(
            "doctor",
            "--transport",
            "http",
            "--auth",
            "passthrough",
            CENSUS_API_VERSION=sandbox.api_version,
            CENSUS_API_BASE_URL=sandbox.base_url,
        )
    )
    assert passthrough.returncode == 0, passthrough.stdout
    assert "ok    Census: not asked: in passthrough each HTTP caller brings the token" in passthrough.stdout
    assert "FAIL" not in passthrough.stdout


def test_doctor_names_a_token_of_the_wrong_kind_once() -> None:
    done = _run(
        "doctor",
        "--api-version",
        "v2",
        "--token",
        "secret-token:abc",
        "--base-url",
        "https://census.invalid/api/v2",
    )
    said = done.stdout + done.stderr
    assert said.count("looks like a v1 workspace API token") == 1
    assert "warn  token: a workspace API token (secret-token:...)" in done.stdout


@pytest.mark.anyio
async def test_doctor_warns_of_v1s_retirement_with_the_date_and_the_switch_until_the_day(
    sandbox: Sandbox,
) -> None:
    config = sandbox.settings()
    before = await examine(config, date(2026, 12, 4))
    on_the_day = await examine(config, V1_RETIREMENT)
    retiring = [text for mark, text in before.lines if "retires API v1" in text]
    if sandbox.api_version == "v1":
        assert ("warn", retiring[0]) in before.lines
        assert retiring == [
            "Census retires API v1 on 2027-01-15, in 42 days. Switch to API v2: create a personal access "
            "token (your user settings, Personal Access Tokens), set CENSUS_API_TOKEN to it and "
            "CENSUS_API_VERSION=v2, then restart census-mcp."
        ]
    else:
        assert retiring == []
    assert not before.failed
    assert not any("retires" in text for _, text in on_the_day.lines)
    # The sandbox's own v1 never retires.
    assert not any(
        "retires" in text for _, text in (await examine(Settings(sandbox=True), date(2026, 12, 4))).lines
    )


def test_doctor_on_the_command_line_names_the_date_while_v1_lasts() -> None:
    """The subprocess reads the real clock: the line is there exactly while v1 lasts."""
    done = _run("doctor", "--token", "secret-token:x", "--base-url", "https://census.invalid/api/v1")
    assert ("warn  Census retires API v1 on 2027-01-15" in done.stdout) == (date.today() < V1_RETIREMENT)


@pytest.mark.anyio
@pytest.mark.parametrize("api_version", ["v2"])
async def test_doctor_checks_the_default_group_on_v2(sandbox: Sandbox) -> None:
    found = ", ".join(sorted(GROUPS))
    unknown = await examine(sandbox.settings(group_id="no_such_group"))
    assert unknown.failed
    assert (
        "FAIL",
        f"group: CENSUS_GROUP_ID no_such_group is not a group of any source the token can see; groups found: "
        f"{found}. Set it to one of them (ids are exact), or leave it unset",
    ) in unknown.lines
    unset = await examine(sandbox.settings(group_id=None))
    assert not unset.failed
    assert (
        "ok",
        f"group: no default (CENSUS_GROUP_ID): create_source will need group_id; groups found: {found}",
    ) in (unset.lines)
    known = await examine(sandbox.settings(group_id=GROUPS[1]))
    assert ("ok", f"group: CENSUS_GROUP_ID {GROUPS[1]} is among the groups found ({found})") in known.lines
    # From the command line, as the newcomer ran it, and on the sandbox.
    for line in (
        ("--api-version", "v2", "--group-id", "no_such_group", "doctor", "--sandbox"),
        (
            "--api-version",
            "v2",
            "--base-url",
            sandbox.base_url,
            "--token",
            sandbox.token,
            "--group-id",
            "nope",
            "doctor",
        ),
    ):
        done = await anyio.to_thread.run_sync(lambda line=line: _run(*line))
        assert done.returncode == 1, done.stdout
        assert re.search(r"^FAIL  group: CENSUS_GROUP_ID \S+ is not a group", done.stdout, re.M)
        assert "Something would stop the server" in done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("api_version", ["v1"])
async def test_doctor_checks_no_group_on_v1(sandbox: Sandbox) -> None:
    assert not any(text.startswith("group:") for _, text in (await examine(sandbox.settings())).lines)


@pytest.mark.parametrize("where", ["before", "after"])
def test_doctor_prints_json_with_json_before_or_after_the_command(where: str) -> None:
    line = ("--json", "doctor") if where == "before" else ("doctor", "--json")
    done = _run("--sandbox", "--api-version", "v2", "--group-id", "no_such_group", *line)
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["ok"] is False
    assert document["verdict"] == "Something would stop the server: fix the FAIL lines."
    marks = {check["text"].split(":")[0]: check["mark"] for check in document["checks"]}
    assert marks["token"] == "ok"
    assert marks["group"] == "FAIL"
    assert done.stderr == ""
    healthy = json.loads(_run("--sandbox", "doctor", "--json").stdout)
    assert healthy["ok"] is True
    assert all(check["mark"] in ("ok", "warn") for check in healthy["checks"])


# ------------------------------------------------------------------ a command line that stays short


@pytest.mark.parametrize(
    ("command", "does"),
    [
        ("tools", "List the tools census-mcp offers, or describe one"),
        ("call", "Call one tool through the real MCP server"),
        ("doctor", "Check the setup the server would use, one line per check"),
        ("sandbox-reset", "Forget what earlier runs did to the built-in sandbox"),
    ],
)
def test_each_commands_help_opens_on_what_it_does_and_lists_only_its_own_options(
    command: str, does: str
) -> None:
    done = _run(command, "--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith(does)
    assert len(lines) <= 25
    listed = set(re.findall(r"(?<![\w-])(--[a-z-]+)", done.stdout))
    # Its own options, and the two every command's help names in its pointer to the global ones.
    assert listed <= {"--help", "--json", "--sandbox", "--token", "--api-version", "--read-only"}
    assert "CENSUS_" not in done.stdout
    assert "see census-mcp --help" in " ".join(done.stdout.split())
    # The global options still work after the command, though its help does not list them.
    assert _run(command, "--sandbox-size", "70", "--help").returncode == 0


def test_call_help_is_short() -> None:
    assert len(_run("call", "--help").stdout.splitlines()) <= 80


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (("--bogus",), "census-mcp: unrecognized arguments: --bogus"),
        (("--sandox", "tools"), "census-mcp: unrecognized arguments: --sandox (did you mean --sandbox?)"),
        (
            ("call", "list_sources", "--read-onyl"),
            "census-mcp: unrecognized arguments: --read-onyl (did you mean --read-only?)",
        ),
        (("cal",), "census-mcp: argument {tools,call,doctor,sandbox-reset}: invalid choice: 'cal'"),
    ],
)
def test_a_mistake_on_the_command_line_is_one_line_and_a_hint_not_the_usage(
    line: tuple[str, ...], said: str
) -> None:
    done = _run(*line)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(said)
    assert re.fullmatch(r"Run `census-mcp( \w+)? --help` for what it takes\.", lines[1])
    assert "usage:" not in done.stderr


def test_list_options_say_their_defaults_in_words() -> None:
    flat = " ".join(_run("--help").stdout.split())
    assert "Comma-separated tool names to offer. Default: all. Env: CENSUS_MCP_TOOLS." in flat
    assert "Comma-separated tool names not to offer. Default: none." in flat
    assert "()" not in flat


@pytest.mark.parametrize("api_version", ["v1", "v2"])
def test_a_tools_example_repeats_the_options_in_force_and_runs_as_printed(
    api_version: str, tmp_path: Path
) -> None:
    state = str(tmp_path / "sandbox.json")
    described = _run(
        "--sandbox", "tools", "get_source", "--api-version", api_version, "--token", "secret-token:x"
    )
    example = described.stdout.splitlines()[-1].strip()
    assert example == (
        f"census-mcp --api-version {api_version} --sandbox call get_source '{{\"source_id\": 1}}'"
    )
    command = shlex.split(example)
    done = subprocess.run(
        [_console_script(), *command[1:], "--sandbox-state", state],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Source #1 ")


@pytest.mark.parametrize("api_version", ["v1", "v2"])
def test_call_prints_no_audit_line_unless_given_a_log(api_version: str, tmp_path: Path) -> None:
    refresh = ("--sandbox", "--api-version", api_version, "call", "refresh_source_tables", '{"source_id": 2}')
    quiet = _run(*refresh)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("Started refreshing the tables of source #2")
    assert "census_write" not in quiet.stderr + quiet.stdout
    audit = tmp_path / "audit.jsonl"
    logged = _run(*refresh, "--audit-log", str(audit))
    assert "census_write" not in logged.stderr + logged.stdout
    [line] = audit.read_text().splitlines()
    assert json.loads(line)["tool"] == "refresh_source_tables"
