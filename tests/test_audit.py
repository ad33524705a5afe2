"""The audit trail: one JSON line per write attempt, naming its principal and never a secret, in
every auth mode (local stdio, shared token, passthrough, OAuth), whatever the outcome."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.elicitation import ElicitationResult
from pydantic import SecretStr

from census_mcp.auth.audit import Principal
from census_mcp.http import create_http_app
from census_mcp.sandbox import FaultConfig
from census_mcp.server import build_server
from tests.conftest import Sandbox, running_sandbox
from tests.helpers import call, call_error, call_ok
from tests.oauth_server import (
    READ,
    WRITE,
    AuthorizationServer,
    bound_socket,
    running_authorization_server,
    serving_socket,
)
from tests.test_http import AUTH_TOKEN, connected, serving
from tests.test_oauth import _post

pytestmark = pytest.mark.anyio
PASSWORD = "audit-canary-pw-5e1f"
POSTGRES = {"hostname": "db.internal", "port": 5432, "user": "census", "password": PASSWORD, "database": "dw"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _writes(client: Client, sandbox: Sandbox) -> None:
    """An attempt of each outcome: ok, refused (the name guard), failed (no such source)."""
    await call_ok(client, "create_source", {"type": "postgres", "credentials": POSTGRES, "label": "Audited"})
    await call_error(client, "delete_source", {"source_id": 2, "confirm_name": "not its name"})
    await call_error(client, "update_source", {"source_id": 99999, "label": "x"})
    await call_ok(client, "get_source", {"source_id": 2})  # a read: not audited


def _check(lines: list[dict[str, Any]], principal: dict[str, str], secrets: list[str], text: str) -> None:
    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("create_source", "ok"),
        ("delete_source", "refused"),
        ("update_source", "failed"),
    ]
    created, refused, failed = lines
    assert created["type"] == "postgres"
    assert created["label"] == "Audited"
    assert isinstance(created["source_id"], int)
    assert created["census_status"] == 201  # what the sandbox answers a create with
    assert refused["source_id"] == 2
    assert refused["census_status"] is None  # never sent
    assert failed["census_status"] == 404
    assert all(line["principal"] == principal for line in lines)
    assert all(line["event"] == "census_write" and line["time"].endswith("Z") for line in lines)
    for secret in secrets:
        assert secret not in text


async def test_local_stdio_writes_are_audited_as_local(sandbox: Sandbox, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    async with Client(build_server(sandbox.settings(audit_log=str(audit)))) as client:
        await _writes(client, sandbox)
    _check(_lines(audit), {"kind": "local"}, [PASSWORD, sandbox.token], audit.read_text())


async def test_shared_token_writes_name_the_shared_token(sandbox: Sandbox, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    settings = sandbox.settings(transport="http", auth_token=SecretStr(AUTH_TOKEN), audit_log=str(audit))
    with serving(settings) as url:
        async with connected(url, AUTH_TOKEN) as client:
            await _writes(client, sandbox)
    _check(_lines(audit), {"kind": "shared-token"}, [PASSWORD, AUTH_TOKEN, sandbox.token], audit.read_text())


async def test_passthrough_writes_name_a_short_digest_of_the_token(api_version: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    user_token = f"{api_version}-user-token-for-audit"
    with running_sandbox(api_version, tokens=(user_token,)) as sandbox:
        settings = sandbox.settings(transport="http", auth="passthrough", token=None, audit_log=str(audit))
        with serving(settings) as url:
            async with connected(url, user_token) as client:
                await _writes(client, sandbox)
    digest = hashlib.sha256(user_token.encode()).hexdigest()[:12]
    _check(
        _lines(audit),
        {"kind": "passthrough", "token_digest": digest},
        [PASSWORD, user_token],
        audit.read_text(),
    )


@contextmanager
def _oauth_serving(sandbox: Sandbox, audit: Path) -> Iterator[tuple[str, AuthorizationServer]]:
    """census-mcp in OAuth mode, auditing to `audit`: its /mcp URL (the tokens' audience) and issuer."""
    with running_authorization_server() as issuer:
        sock = bound_socket()
        settings = sandbox.settings(
            transport="http",
            auth="oauth",
            port=sock.getsockname()[1],
            oauth_issuer=issuer.issuer,
            audit_log=str(audit),
        )
        with serving_socket(create_http_app(settings), sock, lifespan="on"):
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", issuer


async def test_oauth_writes_name_the_subject_and_client(sandbox: Sandbox, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with _oauth_serving(sandbox, audit) as (url, issuer):
        token = issuer.mint(audience=url, scopes=[READ, WRITE], client_id="claude-desktop")
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await _writes(client, sandbox)
    principal = {"kind": "oauth", "sub": issuer.subject, "client_id": "claude-desktop"}
    _check(_lines(audit), principal, [PASSWORD, token, sandbox.token], audit.read_text())


def test_a_write_refused_for_want_of_the_write_scope_is_audited(sandbox: Sandbox, tmp_path: Path) -> None:
    """The 403 step-up challenge comes from the HTTP edge, before any tool runs: it is audited there."""
    audit = tmp_path / "audit.jsonl"
    with _oauth_serving(sandbox, audit) as (url, issuer):
        token = issuer.mint(audience=url, scopes=[READ], client_id="cursor")
        arguments = {"source_id": 2, "confirm_name": sandbox.workspace.sources[2]["name"]}
        answer = _post(url, token, "delete_source", arguments)
        assert answer.status_code == 403
        assert _post(url, token, "get_source", {"source_id": 2}).status_code == 200  # a read: not audited
    [line] = _lines(audit)
    assert (line["event"], line["tool"], line["outcome"], line["source_id"]) == (
        "census_write",
        "delete_source",
        "refused",
        2,
    )
    assert line["principal"] == {"kind": "oauth", "sub": issuer.subject, "client_id": "cursor"}
    assert token not in audit.read_text()
    assert 2 in sandbox.workspace.sources


async def test_a_declined_delete_is_audited_as_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    name = sandbox.workspace.sources[3]["name"]

    async def decline(context: Any, params: Any) -> ElicitationResult:
        from mcp.types import ElicitResult

        return ElicitResult(action="decline")  # type: ignore[return-value]

    async with Client(
        build_server(sandbox.settings(audit_log=str(audit))), elicitation_callback=decline
    ) as client:
        text = await call_error(client, "delete_source", {"source_id": 3, "confirm_name": name})
    assert "declined" in text
    [line] = _lines(audit)
    assert (line["tool"], line["outcome"], line["source_id"]) == ("delete_source", "refused", 3)
    assert 3 in sandbox.workspace.sources


async def test_a_create_whose_answer_is_lost_is_audited_as_unknown(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with running_sandbox("v2") as sandbox:
        taken = sandbox.workspace.sources[3]
        settings = sandbox.settings(audit_log=str(audit), group_id=taken["group_id"], timeout_seconds=0.5)
        async with Client(build_server(settings)) as client:
            # The name is taken in the group, so Census refuses it; the answer is lost on the way back.
            sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=("drop",), methods=("POST",))
            result = await call(
                client, "create_source", {"type": "postgres", "credentials": POSTGRES, "label": taken["name"]}
            )
    assert result.is_error
    [line] = _lines(audit)
    assert (line["tool"], line["outcome"]) == ("create_source", "unknown")


async def test_no_auth_writes_name_an_anonymous_caller(sandbox: Sandbox, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    with serving(sandbox.settings(transport="http", no_auth=True, audit_log=str(audit))) as url:
        async with connected(url, None) as client:
            await _writes(client, sandbox)
    _check(_lines(audit), {"kind": "anonymous"}, [PASSWORD, sandbox.token], audit.read_text())


async def test_without_an_audit_log_the_lines_go_to_stderr(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(sandbox.settings(audit_log=None))) as client:
        await _writes(client, sandbox)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"census_write"' in line]
    _check(lines, {"kind": "local"}, [PASSWORD, sandbox.token], json.dumps(lines))


async def test_a_secret_pasted_into_a_label_is_scrubbed_on_stderr_too(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(build_server(sandbox.settings(audit_log=None))) as client:
        arguments = {
            "type": "postgres",
            "credentials": POSTGRES,
            "label": f"pasted {sandbox.token} by mistake",
        }
        await call_ok(client, "create_source", arguments)
    written = capsys.readouterr().err
    [line] = [json.loads(line) for line in written.splitlines() if '"census_write"' in line]
    assert line["label"].startswith("pasted ")
    assert sandbox.token not in written


async def test_a_one_off_call_writes_no_audit_line(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """`census-mcp call` without --audit-log prints only its result: the write is made, and told nowhere."""
    async with Client(build_server(sandbox.settings(audit_log=None), audit_to_stderr=False)) as client:
        arguments = {"type": "postgres", "credentials": POSTGRES, "label": "Told nowhere"}
        await call_ok(client, "create_source", arguments)
    assert '"census_write"' not in capsys.readouterr().err
    assert [source["label"] for source in sandbox.workspace.sources.values()].count("Told nowhere") == 1


async def test_a_line_holds_what_was_written_as_text_cut_short_and_never_a_secret(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Labels are written as they read (not as JSON escapes, which would hide a non-ASCII secret from
    the scrubber too), cut to 120 characters; a secret pasted into one is scrubbed by value."""
    audit = tmp_path / "audit.jsonl"
    async with Client(build_server(sandbox.settings(audit_log=str(audit)))) as client:
        for label in ("Café ☕ warehouse", "L" * 255, f"pasted {sandbox.token} by mistake"):
            arguments = {"type": "postgres", "credentials": POSTGRES, "label": label}
            await call_ok(client, "create_source", arguments)
    text = audit.read_text()
    accented, long, pasted = _lines(audit)
    assert '"label": "Café ☕ warehouse"' in text
    assert accented["label"] == "Café ☕ warehouse"
    assert long["label"] == "L" * 119 + "…"
    assert sandbox.token not in text
    assert pasted["label"].startswith("pasted ")


@pytest.mark.parametrize("source_id", ["2", True, 2.0], ids=["text", "true", "float"])
async def test_a_source_id_that_is_not_an_integer_is_not_written_down(
    sandbox: Sandbox, tmp_path: Path, source_id: Any
) -> None:
    """A write refused for its arguments is audited, naming no source: what was sent is not an id."""
    audit = tmp_path / "audit.jsonl"
    async with Client(build_server(sandbox.settings(audit_log=str(audit)))) as client:
        await call_error(client, "delete_source", {"source_id": source_id, "confirm_name": "x"})
    [line] = _lines(audit)
    assert (line["tool"], line["outcome"], line["source_id"]) == ("delete_source", "refused", None)


@pytest.mark.parametrize("kind", ["truncated", "drop"])
async def test_a_refresh_whose_answer_is_lost_is_audited_as_unknown(
    sandbox: Sandbox, tmp_path: Path, kind: str
) -> None:
    """Census may have started the job: the outcome is unknown, with the status Census sent, if any."""
    audit = tmp_path / "audit.jsonl"
    async with Client(build_server(sandbox.settings(audit_log=str(audit)))) as client:
        sandbox.workspace.faults = FaultConfig(rate=1.0, kinds=(kind,), methods=("POST",))
        await call_error(client, "refresh_source_tables", {"source_id": 2})
    [line] = _lines(audit)
    status = None if kind == "drop" else 200
    assert (line["tool"], line["outcome"]) == ("refresh_source_tables", "unknown")
    assert line["census_status"] == status


def test_a_principal_names_are_cut_short() -> None:
    long = Principal("oauth", subject="s" * 300, client_id="c" * 300).as_json()
    assert long == {"kind": "oauth", "sub": "s" * 199 + "…", "client_id": "c" * 199 + "…"}


async def test_with_audit_reads_every_read_is_recorded_too(sandbox: Sandbox, tmp_path: Path) -> None:
    """--audit-reads: each read, as it went, beside the writes; without it, reads leave nothing."""
    audit = tmp_path / "audit.jsonl"
    settings = sandbox.settings(
        transport="http", auth_token=SecretStr(AUTH_TOKEN), audit_log=str(audit), audit_reads=True
    )
    with serving(settings) as url:
        async with connected(url, AUTH_TOKEN) as client:
            await call_ok(client, "list_sources", {"test_status": "failed"})
            await call_ok(client, "get_source", {"source_id": 2})
            await call_error(client, "get_source", {"source_id": 99999})
            await call_ok(client, "update_source", {"source_id": 2, "label": "Read and written"})
    lines = _lines(audit)
    assert [(line["event"], line["tool"], line["outcome"], line["source_id"]) for line in lines] == [
        ("census_read", "list_sources", "ok", None),
        ("census_read", "get_source", "ok", 2),
        ("census_read", "get_source", "failed", 99999),
        ("census_write", "update_source", "ok", 2),
    ]
    assert lines[2]["census_status"] == 404
    assert all(line["principal"] == {"kind": "shared-token"} for line in lines)
    assert AUTH_TOKEN not in audit.read_text()
    assert sandbox.token not in audit.read_text()
