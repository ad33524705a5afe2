"""OAuth mode against a real authorization server on loopback (the SDK's own AS routes, issuing
signed JWTs): the SDK client signs in by itself through the protected-resource metadata, scopes
decide what a caller sees and may do, a write without the write scope steps up, and every kind
of bad token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken, TokenVerifier
from pydantic import SecretStr

from census_mcp.auth import oauth
from census_mcp.auth.oauth import ALGORITHMS, access_token, scopes_of
from census_mcp.http import create_http_app, uvicorn_limits
from census_mcp.settings import Settings, SettingsError
from tests.conftest import Sandbox
from tests.helpers import call_ok, said_by
from tests.oauth_server import (
    READ,
    WRITE,
    AuthorizationServer,
    MemoryTokens,
    bound_socket,
    running_authorization_server,
    serving_socket,
    signing_in,
)
from tests.test_guarded_writes import READ_TOOLS, WRITE_TOOLS
from tests.test_real_clients import census_mcp_over_http
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio


@dataclass
class Served:
    url: str
    issuer: AuthorizationServer

    def token(self, scopes: list[str] = [READ], **changes: Any) -> str:  # noqa: B006 - never mutated
        return self.issuer.mint(audience=self.url, scopes=scopes, **changes)


@pytest.fixture(scope="module")
def authorization_server() -> Iterator[AuthorizationServer]:
    with running_authorization_server() as server:
        yield server


@contextmanager
def oauth_server(sandbox: Sandbox, issuer: AuthorizationServer, **overrides: Any) -> Iterator[Served]:
    """census-mcp over HTTP in OAuth mode, its audience its own URL (known before it is built)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    settings = sandbox.settings(
        transport="http", auth="oauth", port=port, oauth_issuer=issuer.issuer, **overrides
    )
    with serving_socket(create_http_app(settings), sock, lifespan="on", **uvicorn_limits(settings)):
        yield Served(f"http://127.0.0.1:{port}/mcp", issuer)


@pytest.fixture
def served(sandbox: Sandbox, authorization_server: AuthorizationServer) -> Iterator[Served]:
    with oauth_server(sandbox, authorization_server) as running:
        yield running


@asynccontextmanager
async def with_token(url: str, token: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


def _post(
    url: str, token: str | None, tool: str = "list_sources", arguments: dict[str, Any] | None = None
) -> httpx2.Response:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": tool, "arguments": arguments or {}, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return httpx2.post(
        url, json=body, headers=headers | {"Mcp-Method": "tools/call", "Mcp-Name": tool}, timeout=30
    )


async def test_the_sdk_client_signs_in_by_itself_and_steps_up_to_write(
    served: Served, sandbox: Sandbox
) -> None:
    """Through the protected-resource metadata to the authorization server, with read access first;
    a write answers 403 insufficient_scope, the client signs in again with both scopes, and writes."""
    storage = MemoryTokens()
    http = httpx2.AsyncClient(auth=signing_in(served.url, storage), timeout=30)
    async with http, Client(streamable_http_client(served.url, http_client=http)) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert storage.tokens is not None
        assert storage.tokens.scope == READ
        assert listed == READ_TOOLS
        result = await call_ok(client, "list_sources", {"test_status": "failed"})
        assert result.structured_content is not None
        failing = sum(s["last_test_succeeded"] is False for s in sandbox.workspace.sources.values())
        assert result.structured_content["total"] == failing
        updated = await call_ok(client, "update_source", {"source_id": 2, "label": "Signed in"})
        assert set((storage.tokens.scope or "").split()) == {READ, WRITE}
        assert updated.structured_content is not None
        assert sandbox.workspace.sources[2]["label"] == "Signed in"
        assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS | WRITE_TOOLS


async def test_metadata_and_challenges_follow_the_specs(served: Served, sandbox: Sandbox) -> None:
    metadata_url = served.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    metadata = httpx2.get(metadata_url, timeout=10)
    assert metadata.status_code == 200
    # Fetched by clients from any origin (a browser-based one too), and cacheable by them.
    assert metadata.headers["access-control-allow-origin"] == "*"
    assert metadata.headers["cache-control"] == "public, max-age=3600"
    assert metadata.json() == {
        "resource": served.url,
        "authorization_servers": [served.issuer.issuer],
        "scopes_supported": [READ, WRITE],
        "bearer_methods_supported": ["header"],
        "resource_name": "census-mcp",
    }
    missing = _post(served.url, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f'Bearer scope="{READ}", resource_metadata="{metadata_url}"'
    read_only = served.token([READ])
    write = _post(served.url, read_only, "delete_source", {"source_id": 2, "confirm_name": "x"})
    assert write.status_code == 403
    assert write.json() == {
        "error": "insufficient_scope",
        "error_description": "Your sign-in lacks a scope this needs.",
    }
    assert write.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{READ} {WRITE}", error_description="This tool changes '
        f'the workspace: it needs the {WRITE} scope.", resource_metadata="{metadata_url}"'
    )
    no_read = _post(served.url, served.token(["something:else"]))
    assert no_read.status_code == 403
    assert no_read.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{READ}", resource_metadata="{metadata_url}"'
    )
    refused = _post(served.url, served.token(lifetime=-3600))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token was not accepted.", '
        f'scope="{READ}", resource_metadata="{metadata_url}"'
    )
    assert 2 in sandbox.workspace.sources


async def test_a_token_without_the_write_scope_sees_and_may_call_only_the_reads(served: Served) -> None:
    async with with_token(served.url, served.token([READ])) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS
        await call_ok(client, "get_source", {"source_id": 2})
    async with with_token(served.url, served.token([READ, WRITE])) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS | WRITE_TOOLS


@pytest.mark.parametrize("scp", [f"{READ} {WRITE}", [READ, WRITE]], ids=["string", "list"])
async def test_scopes_in_scp_count_as_a_string_or_a_list(served: Served, sandbox: Sandbox, scp: Any) -> None:
    """Entra ID sends `scp` as one space-separated string, Okta as a list; either grants its scopes."""
    async with with_token(served.url, served.token(scope=None, scp=scp)) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS | WRITE_TOOLS
        await call_ok(client, "update_source", {"source_id": 2, "label": "Via scp"})
    assert sandbox.workspace.sources[2]["label"] == "Via scp"


async def test_read_only_wins_over_every_scope(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    with oauth_server(sandbox, authorization_server, read_only=True) as served:
        async with with_token(served.url, served.token([READ, WRITE])) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == READ_TOOLS


ENTRA_APP_ID = "6f1c1b8e-3f0a-4d8e-9a57-0c1f2d3e4b5a"


@pytest.mark.parametrize("audience", [ENTRA_APP_ID, "api://census-mcp"])
def test_the_audience_may_be_the_providers_own_name_for_the_api(
    sandbox: Sandbox, authorization_server: AuthorizationServer, audience: str
) -> None:
    """Entra ID puts the API's application ID (or its api:// URI) in `aud`, not a URL: the server
    still names its own URL as the resource, and takes tokens for that audience only."""
    with oauth_server(sandbox, authorization_server, oauth_audience=audience) as served:
        metadata = httpx2.get(served.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
        assert metadata.json()["resource"] == served.url
        assert _post(served.url, served.issuer.mint(audience=audience, scopes=[READ])).status_code == 200
        assert _post(served.url, served.token([READ])).status_code == 401
        other_app = served.issuer.mint(audience="0b7c5d2e-1a3f-4c6d-8e9f-a1b2c3d4e5f6", scopes=[READ])
        assert _post(served.url, other_app).status_code == 401


def test_a_token_for_an_entra_app_is_refused_when_the_audience_is_left_to_its_default(
    served: Served,
) -> None:
    assert _post(served.url, served.issuer.mint(audience=ENTRA_APP_ID, scopes=[READ])).status_code == 401


def test_behind_a_proxy_the_public_url_is_the_resource_and_the_default_audience(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    public = "https://mcp.example.com/census"
    with oauth_server(sandbox, authorization_server, public_url=public) as served:
        root = served.url.removesuffix("/mcp")
        metadata = httpx2.get(f"{root}/.well-known/oauth-protected-resource/census/mcp")
        assert metadata.json()["resource"] == f"{public}/mcp"
        challenge = _post(served.url, None).headers["www-authenticate"]
        assert (
            'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/census/mcp"'
            in (challenge)
        )
        assert (
            _post(served.url, served.issuer.mint(audience=f"{public}/mcp", scopes=[READ])).status_code == 200
        )
        assert _post(served.url, served.token([READ])).status_code == 401


def test_an_entra_style_setup_starts_from_the_command_line(tmp_path: Path) -> None:
    """A GUID audience and an unreachable issuer: the server starts (the issuer is asked on the
    first token) and names its public URL as the resource."""
    options = [
        *("--auth", "oauth", "--oauth-issuer", "https://login.microsoftonline.com/TENANT-ID/v2.0"),
        *("--oauth-audience", ENTRA_APP_ID, "--public-url", "https://mcp.example.com"),
    ]
    with census_mcp_over_http(tmp_path / "stderr.txt", "unused", *options) as port:
        metadata = httpx2.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", timeout=10)
        assert metadata.json()["resource"] == "https://mcp.example.com/mcp"
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--public-url", "mcp.example.com", "--public-url (CENSUS_MCP_PUBLIC_URL) must start with https://"),
        ("--public-url", "https://mcp.example.com/?x=1", "must not have a query or a fragment"),
        ("--public-url", "https://exa mple.com", "is not a valid URL"),
        ("--oauth-issuer", "login.microsoftonline.com/T/v2.0", "--oauth-issuer (CENSUS_MCP_OAUTH_ISSUER)"),
        ("--oauth-jwks-url", "https://", "has no host"),
    ],
)
def test_an_unusable_url_setting_is_one_line_at_start_up(option: str, value: str, complaint: str) -> None:
    done = subprocess.run(
        [_console_script(), "--sandbox", "--transport", "http", "--auth", "oauth", option, value]
        + ([] if option == "--oauth-issuer" else ["--oauth-issuer", "https://id.example.com"]),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert complaint in done.stderr


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = f"{READ} {WRITE}"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _unsigned(served: Served) -> str:
    claims = jwt.decode(served.token([READ, WRITE]), options={"verify_signature": False})
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


def _hmac_with_the_public_key(served: Served) -> str:
    """The classic confusion: an HS256 token whose secret is the issuer's public key (signed by hand:
    PyJWT itself refuses to)."""
    claims = jwt.decode(served.token([READ]), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": served.issuer.key.kid}
    signed = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    public = json.dumps(served.issuer.key.jwk()).encode()
    return f"{signed}.{_b64(hmac.new(public, signed.encode(), hashlib.sha256).digest())}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: s.token(lifetime=-3600), id="expired"),
        pytest.param(lambda s: s.token(aud="http://127.0.0.1:1/mcp"), id="wrong-audience"),
        pytest.param(lambda s: s.token(iss="http://127.0.0.1:1"), id="wrong-issuer"),
        pytest.param(lambda s: s.token(exp=None), id="no-expiry"),
        pytest.param(lambda s: s.token(sub=None), id="no-subject"),
        pytest.param(_unsigned, id="alg-none"),
        pytest.param(lambda s: _tampered(s.token([READ])), id="tampered"),
        pytest.param(_hmac_with_the_public_key, id="hs256-with-public-key"),
        pytest.param(lambda s: "not-a-jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(served: Served, forge: Any) -> None:
    answer = _post(served.url, forge(served))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: None, id="no-token"),
        pytest.param(lambda s: _tampered(s.token([READ])), id="tampered"),
        pytest.param(lambda s: s.token(lifetime=-3600), id="expired"),
        pytest.param(lambda s: s.token(aud="http://127.0.0.1:1/mcp"), id="wrong-audience"),
    ],
)
def test_a_token_is_judged_before_the_body_is_waited_for(served: Served, forge: Any) -> None:
    """Signature, issuer, audience and expiry are judged from the headers: a refused token with a
    500,000-byte body declared and none of it sent gets 401 within a second, the connection closed."""
    token = forge(served)
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    port = int(served.url.rsplit(":", 1)[1].removesuffix("/mcp"))
    with socket.create_connection(("127.0.0.1", port)) as raw:
        started = time.monotonic()
        raw.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: 500000\r\n{authorization}\r\n".encode()
        )
        raw.settimeout(1)
        answer = b""
        while received := raw.recv(65536):  # to the end: the server closes the connection
            answer += received
        assert time.monotonic() - started < 1
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
    assert b"\r\nwww-authenticate: bearer " in answer.lower()
    assert b"\r\nconnection: close\r\n" in answer.lower()


def test_arguments_nested_past_any_parsers_depth_get_a_4xx_not_a_500(served: Served) -> None:
    """A read token may send anything: 5,000 levels of arguments are refused by the gate's one
    bounded parse (the scope check reads what it parsed), never a RecursionError."""
    token = served.token([READ])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for nested in ("[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000):
        body = (
            '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
            f'"params": {{"name": "delete_source", "arguments": {{"x": {nested}}}}}}}'
        )
        answer = httpx2.post(served.url, content=body, headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text[:200]
        assert answer.json()["error"]["code"] == -32700
    assert _post(served.url, token).status_code == 200


def test_only_a_call_of_a_write_tool_needs_the_write_scope_whatever_the_message_looks_like(
    served: Served,
) -> None:
    """The scope check reads the parsed message as it comes: another method naming a write tool is
    not a write; a batch, params or arguments of the wrong shape are the SDK's to refuse, not a 500."""
    token = served.token([READ])
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    headers["Accept"] = "application/json, text/event-stream"
    not_writes = [
        {"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "delete_source"}},
        [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete_source"}}],
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ["delete_source"]},
    ]
    for message in not_writes:
        answer = httpx2.post(served.url, json=message, headers=headers, timeout=30)
        assert answer.status_code in (200, 400), (message, answer.status_code, answer.text[:200])
    odd_arguments = {"name": "delete_source", "arguments": [2, "x"]}
    write = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": odd_arguments}
    refused = httpx2.post(served.url, json=write, headers=headers, timeout=30)
    assert refused.status_code == 403


def test_a_100_kb_bearer_token_is_refused_by_the_header_limit(served: Served) -> None:
    huge = _post(served.url, "e" * 100_000)
    assert huge.status_code == 431
    assert "headers are over 16 KiB" in huge.text
    assert _post(served.url, served.token([READ])).status_code == 200


def test_a_jwt_is_measured_before_it_is_decoded(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    header = _b64(json.dumps({"alg": "RS256", "kid": served.issuer.key.kid, "x": "y" * 3100}).encode())
    fits, too_large = (f"{head}.{_b64(b'{}')}.{_b64(b'x')}" for head in (header[:4096], header[:4097]))
    with caplog.at_level(logging.INFO, logger="census_mcp.auth.oauth"):
        assert _post(served.url, fits).status_code == 401
        assert _post(served.url, too_large).status_code == 401
        assert _post(served.url, "only.two").status_code == 401
    said = said_by(caplog, "census_mcp.auth.oauth")
    # The header that fits is decoded (and is not valid JSON, cut short); the others are not.
    assert said == [
        "Refused an access token (DecodeError)",
        "Refused an access token (not three parts of a size a JWT has)",
        "Refused an access token (not three parts of a size a JWT has)",
    ]


async def test_a_jwt_payload_is_measured_before_it_is_decoded(caplog: pytest.LogCaptureFixture) -> None:
    """The verifier on its own (whatever stands in front of it): a payload of 16,385 characters is
    refused unread; one of 16,384 is read on (and refused here for its algorithm, quietly)."""
    config = oauth.OAuthConfig(
        issuer="https://id.example.com",
        resource="http://127.0.0.1:1/mcp",
        audience="x",
        read_scope=READ,
        write_scope=WRITE,
    )
    header = _b64(json.dumps({"alg": "HS256"}).encode())
    async with httpx2.AsyncClient() as http:
        verifier = oauth.JwtVerifier(config, oauth.KeySet("http://127.0.0.1:9/jwks", http))
        with caplog.at_level(logging.INFO, logger="census_mcp.auth.oauth"):
            for size in (16 * 1024, 16 * 1024 + 1):
                assert await verifier.verify_token(f"{header}.{'e' * size}.{_b64(b'x')}") is None
    assert said_by(caplog, "census_mcp.auth.oauth") == [
        "Refused an access token (not three parts of a size a JWT has)"
    ]


class Verdicts(TokenVerifier):
    """A verifier that accepts tokens starting `ok` (expiring at `expires_at`, if given) and counts
    what it is asked."""

    def __init__(self, expires_at: int | None = None) -> None:
        self.asked: list[str] = []
        self.expires_at = expires_at

    async def verify_token(self, token: str) -> AccessToken | None:
        self.asked.append(token)
        if not token.startswith("ok"):
            return None
        return AccessToken(token=token, client_id="c", scopes=[READ], expires_at=self.expires_at)


async def test_a_verdict_is_kept_a_minute_a_refusal_five_seconds() -> None:
    now = [1000.0]
    inner = Verdicts()
    verifier = oauth.RememberingVerifier(inner, clock=lambda: now[0])
    for token in ("ok-a", "no-a", "ok-a", "no-a"):
        await verifier.verify_token(token)
    assert inner.asked == ["ok-a", "no-a"]
    now[0] = 1004.9
    assert await verifier.verify_token("ok-a") is not None
    assert await verifier.verify_token("no-a") is None
    assert inner.asked == ["ok-a", "no-a"]
    now[0] = 1005.0  # the refusal has had its five seconds
    await verifier.verify_token("no-a")
    await verifier.verify_token("ok-a")
    assert inner.asked == ["ok-a", "no-a", "no-a"]
    now[0] = 1059.9
    await verifier.verify_token("ok-a")
    assert inner.asked == ["ok-a", "no-a", "no-a"]
    now[0] = 1060.0  # the verdict has had its minute
    await verifier.verify_token("ok-a")
    assert inner.asked == ["ok-a", "no-a", "no-a", "ok-a"]


async def test_a_verdict_is_never_kept_past_the_tokens_expiry() -> None:
    now = [1000.0]
    inner = Verdicts(expires_at=1010)
    verifier = oauth.RememberingVerifier(inner, clock=lambda: now[0])
    await verifier.verify_token("ok-expiring")
    now[0] = 1009.9
    await verifier.verify_token("ok-expiring")
    assert len(inner.asked) == 1
    now[0] = 1010.0
    await verifier.verify_token("ok-expiring")
    assert len(inner.asked) == 2


async def test_at_most_1024_verdicts_are_kept_the_least_recently_used_going_first() -> None:
    now = [1000.0]
    inner = Verdicts()
    verifier = oauth.RememberingVerifier(inner, clock=lambda: now[0])
    for n in range(1024):
        await verifier.verify_token(f"ok-{n}")
    await verifier.verify_token("ok-0")  # used again: now the most recent
    await verifier.verify_token("ok-new")  # one too many: ok-1 goes
    asked = len(inner.asked)
    await verifier.verify_token("ok-0")
    assert len(inner.asked) == asked
    await verifier.verify_token("ok-1")
    assert len(inner.asked) == asked + 1
    # A verdict asked for again once it expired is the most recent one too.
    again = Verdicts()
    fresh = oauth.RememberingVerifier(again, clock=lambda: now[0])
    await fresh.verify_token("no-first")
    now[0] = 1001.0
    for n in range(1023):
        await fresh.verify_token(f"ok-{n}")
    now[0] = 1006.0
    await fresh.verify_token("no-first")  # its refusal expired: asked again, and kept anew
    await fresh.verify_token("ok-new")  # one too many: ok-0 goes, not no-first
    asked = len(again.asked)
    await fresh.verify_token("no-first")
    assert len(again.asked) == asked


async def test_a_token_over_16_kib_is_refused_without_being_checked() -> None:
    checked: list[str] = []

    class Counting(TokenVerifier):
        async def verify_token(self, token: str) -> AccessToken | None:
            checked.append(token)
            return None

    verifier = oauth.RememberingVerifier(Counting())
    assert await verifier.verify_token("t" * (16 * 1024 + 1)) is None
    assert checked == []
    assert await verifier.verify_token("t" * 16 * 1024) is None
    assert len(checked) == 1


async def test_keys_are_fetched_for_unknown_key_ids_at_most_six_times_a_minute(
    authorization_server: AuthorizationServer,
) -> None:
    """A caller inventing key ids cannot make this server ask the identity provider more often."""
    now = [1000.0]
    async with httpx2.AsyncClient() as http:
        keys = oauth.KeySet(f"{authorization_server.issuer}/configured-jwks", http, clock=lambda: now[0])
        fetched = authorization_server.configured_jwks_fetches

        async def invent(count: int) -> int:
            for n in range(count):
                assert await keys.key(f"invented-{now[0]}-{n}") is None
            return authorization_server.configured_jwks_fetches - fetched

        assert await invent(10) == 6
        now[0] += 10  # a tenth of the minute: no more
        assert await invent(10) == 6
        now[0] += 49.5  # still within the minute of the first fetch
        assert await invent(10) == 6
        now[0] += 0.5  # a minute after the six: six more, and no more
        assert await invent(10) == 12


def test_a_token_within_the_clock_skew_is_accepted(served: Served) -> None:
    assert _post(served.url, served.token([READ], lifetime=-20)).status_code == 200


def test_a_rotated_signing_key_is_picked_up(served: Served) -> None:
    assert _post(served.url, served.token([READ])).status_code == 200
    fetches = served.issuer.jwks_fetches
    served.issuer.rotate_key()
    assert _post(served.url, served.token([READ])).status_code == 200
    assert served.issuer.jwks_fetches == fetches + 1
    # A key id no one published is refused, and asks for the keys at most a few times a minute.
    for n in range(20):
        forged = jwt.encode(
            {"sub": "x"}, served.issuer.key.private, algorithm="RS256", headers={"kid": f"invented-{n}"}
        )
        assert _post(served.url, forged).status_code == 401
    assert served.issuer.jwks_fetches <= fetches + 6


async def test_a_known_key_is_fetched_once_however_many_ask_for_it_at_once(
    authorization_server: AuthorizationServer,
) -> None:
    async with httpx2.AsyncClient() as http:
        keys = oauth.KeySet(f"{authorization_server.issuer}/configured-jwks", http)
        fetched = authorization_server.configured_jwks_fetches
        kid = authorization_server.key.kid
        found: list[object] = []

        async def look() -> None:
            found.append(await keys.key(kid))

        async with anyio.create_task_group() as many:
            for _ in range(5):
                many.start_soon(look)
        for _ in range(5):
            await look()
    assert all(key is not None for key in found)
    assert authorization_server.configured_jwks_fetches - fetched == 1


async def test_keys_that_cannot_be_had_are_asked_for_six_times_a_minute_then_refused_quietly() -> None:
    async with httpx2.AsyncClient() as http:
        keys = oauth.KeySet("http://127.0.0.1:9/jwks", http, clock=lambda: 0.0)
        for _ in range(6):
            with pytest.raises(httpx2.ConnectError):
                await keys.key("any")
        assert await keys.key("any") is None


async def test_a_key_set_that_never_answers_is_given_up_on(authorization_server: AuthorizationServer) -> None:
    """The key set's own 5 s timeout, whatever the HTTP client's."""
    async with httpx2.AsyncClient(timeout=None) as http:
        keys = oauth.KeySet(f"{authorization_server.issuer}/hang", http)
        with anyio.fail_after(15), pytest.raises(httpx2.ReadTimeout):
            await keys.key("any")


def test_a_jwks_url_given_is_used_instead_of_the_discovered_one(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    configured = f"{authorization_server.issuer}/configured-jwks"
    fetched = (authorization_server.configured_jwks_fetches, authorization_server.jwks_fetches)
    with oauth_server(sandbox, authorization_server, oauth_jwks_url=configured) as served:
        assert _post(served.url, served.token([READ])).status_code == 200
    assert (authorization_server.configured_jwks_fetches, authorization_server.jwks_fetches) == (
        fetched[0] + 1,
        fetched[1],
    )


def _signing_keys() -> dict[str, Any]:
    """A private key for each algorithm identity providers sign access tokens with."""
    rsa_key = rsa.generate_private_key(65537, 2048)
    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    keys: dict[str, Any] = {alg: rsa_key for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")}
    keys |= {alg: ec.generate_private_key(curve) for alg, curve in curves.items()}
    return keys | {"EdDSA": ed25519.Ed25519PrivateKey.generate()}


def test_tokens_signed_with_any_asymmetric_algorithm_providers_use_are_accepted(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    keys = _signing_keys()
    assert set(keys) == set(ALGORITHMS)
    authorization_server.more_keys = [
        json.loads(jwt.get_algorithm_by_name(alg).to_jwk(key.public_key())) | {"kid": f"k-{alg}", "alg": alg}
        for alg, key in keys.items()
    ]
    try:
        with oauth_server(sandbox, authorization_server) as served:
            statuses = {}
            for alg, key in keys.items():
                claims = jwt.decode(served.token([READ]), options={"verify_signature": False})
                token = jwt.encode(claims, key, algorithm=alg, headers={"kid": f"k-{alg}"})
                statuses[alg] = _post(served.url, token).status_code
    finally:
        authorization_server.more_keys = []
    assert statuses == dict.fromkeys(keys, 200)


async def test_opaque_tokens_are_checked_by_introspection(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    authorization_server.issue_opaque = True
    try:
        introspection = f"{authorization_server.issuer}/introspect"
        with oauth_server(sandbox, authorization_server, oauth_introspection_url=introspection) as served:
            http = httpx2.AsyncClient(auth=signing_in(served.url), timeout=30)
            async with http, Client(streamable_http_client(served.url, http_client=http)) as client:
                await call_ok(client, "get_source", {"source_id": 2})
            assert _post(served.url, "an-opaque-token-nobody-issued").status_code == 401
    finally:
        authorization_server.issue_opaque = False


def test_an_introspected_token_must_be_active_for_this_server_from_this_issuer_and_unexpired(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    introspection = f"{authorization_server.issuer}/introspect"
    secret = "introspection-secret-4f1a"
    with oauth_server(
        sandbox,
        authorization_server,
        oauth_introspection_url=introspection,
        oauth_client_id="census-mcp",
        oauth_client_secret=SecretStr(secret),
    ) as served:
        now = int(time.time())
        good = {"active": True, "iss": authorization_server.issuer, "aud": served.url, "exp": now + 600}
        good["scope"] = READ
        answers: dict[str, dict[str, Any]] = {
            "good": good,
            "no issuer named": {**good, "iss": None},
            "one of its audiences": {**good, "aud": ["https://other.example/mcp", served.url]},
            "expired within the clock skew": {**good, "exp": now - 30},
            "inactive": {**good, "active": False},
            "active as text": {**good, "active": "true"},
            "another issuer": {**good, "iss": "https://evil.example"},
            "another audience": {**good, "aud": "https://other.example/mcp"},
            "no audience": {**good, "aud": None},
            "expired": {**good, "exp": now - 120},
            "no expiry": {**good, "exp": None},
            "expiry as text": {**good, "exp": str(now + 600)},
            "expiry with a fraction": {**good, "exp": now + 600.5},
        }
        statuses = {}
        for case, claims in answers.items():
            token = f"opaque-{case.replace(' ', '-')}"
            kept = {key: value for key, value in claims.items() if value is not None}
            authorization_server.opaque[token] = kept
            statuses[case] = _post(served.url, token).status_code
    accepted = ["good", "no issuer named", "one of its audiences", "expired within the clock skew"]
    accepted.append("expiry with a fraction")
    assert statuses == {case: 200 if case in accepted else 401 for case in answers}
    # RFC 7662: the introspecting server signs in, with the client it was given (HTTP Basic).
    basic = base64.b64encode(f"census-mcp:{secret}".encode()).decode()
    assert authorization_server.introspected_by == f"Basic {basic}"


def test_a_refused_token_leaves_one_line_saying_why_and_not_the_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    expired = served.token(lifetime=-3600)
    with caplog.at_level(logging.INFO, logger="census_mcp.auth.oauth"):
        assert _post(served.url, expired).status_code == 401
    said = said_by(caplog, "census_mcp.auth.oauth")
    assert said == ["Refused an access token (ExpiredSignatureError)"]


@pytest.mark.parametrize(
    ("keys_at", "reason"), [("http://127.0.0.1:9/jwks", "ConnectError"), ("/not-json", "JSONDecodeError")]
)
def test_keys_that_cannot_be_had_refuse_the_token_not_the_server(
    sandbox: Sandbox,
    authorization_server: AuthorizationServer,
    caplog: pytest.LogCaptureFixture,
    keys_at: str,
    reason: str,
) -> None:
    url = keys_at if keys_at.startswith("http") else f"{authorization_server.issuer}{keys_at}"
    with (
        oauth_server(sandbox, authorization_server, oauth_jwks_url=url) as served,
        caplog.at_level(logging.INFO, logger="census_mcp.auth.oauth"),
    ):
        answer = _post(served.url, served.token([READ]))
    assert answer.status_code == 401
    said = said_by(caplog, "census_mcp.auth.oauth")
    assert f"Refused an access token ({reason})" in said


@pytest.mark.parametrize(
    ("answered_at", "status", "reason"),
    [
        ("http://127.0.0.1:9/introspect", 200, "ConnectError"),
        ("/not-json", 200, "JSONDecodeError"),
        ("/hang", 200, "ReadTimeout"),
        ("/introspect", 500, None),
    ],
)
def test_an_introspection_that_fails_refuses_the_token(
    sandbox: Sandbox,
    authorization_server: AuthorizationServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    answered_at: str,
    status: int,
    reason: str | None,
) -> None:
    """Unreachable, not JSON, too slow, or an error status (whatever its body says): refused."""
    monkeypatch.setattr(oauth, "_FETCH_TIMEOUT_SECONDS", 0.5)
    url = answered_at if answered_at.startswith("http") else f"{authorization_server.issuer}{answered_at}"
    now = int(time.time())
    token = f"opaque-answered-with-{status}"
    authorization_server.opaque[token] = {"active": True, "scope": READ, "exp": now + 600}
    authorization_server.introspection_status = status
    try:
        with oauth_server(sandbox, authorization_server, oauth_introspection_url=url) as served:
            authorization_server.opaque[token]["aud"] = served.url
            with caplog.at_level(logging.INFO, logger="census_mcp.auth.oauth"):
                answer = _post(served.url, token)
    finally:
        authorization_server.introspection_status = 200
    assert answer.status_code == 401
    said = said_by(caplog, "census_mcp.auth.oauth")
    assert said == ([] if reason is None else [f"Could not introspect an access token ({reason})"])


def test_an_introspection_answer_that_is_not_an_object_refuses_the_token(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    authorization_server.opaque["opaque-a-list"] = [{"active": True}]  # type: ignore[assignment]
    introspection = f"{authorization_server.issuer}/introspect"
    with oauth_server(sandbox, authorization_server, oauth_introspection_url=introspection) as served:
        assert _post(served.url, "opaque-a-list").status_code == 401


def test_a_client_id_alone_introspects_without_signing_in(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    """A public client has no secret: nothing to sign in with, so no Authorization header."""
    introspection = f"{authorization_server.issuer}/introspect"
    now = int(time.time())
    with oauth_server(
        sandbox, authorization_server, oauth_introspection_url=introspection, oauth_client_id="census-mcp"
    ) as served:
        authorization_server.opaque["opaque-public"] = {
            "active": True,
            "aud": served.url,
            "exp": now + 600,
            "scope": READ,
        }
        assert _post(served.url, "opaque-public").status_code == 200
    assert authorization_server.introspected_by is None
    sent = {"token": "opaque-public", "token_type_hint": "access_token"}
    assert authorization_server.introspected_form == sent


def test_scopes_named_in_both_claims_are_counted_once() -> None:
    assert scopes_of({"scope": "census:read census:write", "scp": ["census:write", "openid"]}) == [
        "census:read",
        "census:write",
        "openid",
    ]


def test_a_client_secret_needs_its_client() -> None:
    with pytest.raises(SettingsError, match="name the client with --oauth-client-id"):
        Settings(transport="http", auth="oauth", oauth_client_secret=SecretStr("s3cret-9d2e"))


def test_oauth_mode_needs_an_issuer_and_the_servers_own_census_token() -> None:
    from census_mcp.settings import SettingsError

    with pytest.raises(SettingsError, match="CENSUS_MCP_OAUTH_ISSUER"):
        Settings(transport="http", auth="oauth", token=SecretStr("secret-token:x")).require_credentials(
            serving_http=True
        )
    with pytest.raises(SettingsError, match="calls Census with the server's own token"):
        Settings(transport="http", auth="oauth", oauth_issuer="https://id.example.com").require_credentials(
            serving_http=True
        )


@pytest.mark.parametrize(
    ("claim", "provider"),
    [("client_id", "RFC 9068"), ("azp", "OpenID Connect"), ("cid", "Okta"), ("appid", "Entra ID")],
)
def test_the_client_is_read_from_the_claim_each_provider_uses(claim: str, provider: str) -> None:
    claims = {"sub": "alice@example.com", "exp": 1_900_000_000, claim: f"client-of-{provider}", "scp": READ}
    granted = access_token("the-token", claims, "https://mcp.example.com/mcp")
    assert granted.client_id == f"client-of-{provider}"
    assert (granted.subject, granted.scopes, granted.resource) == (
        "alice@example.com",
        [READ],
        "https://mcp.example.com/mcp",
    )
    # The SDK's own expiry check allows the same clock skew as the token checks here.
    assert granted.expires_at == 1_900_000_000 + 60


def test_a_token_naming_no_client_or_subject_still_reads_as_text() -> None:
    granted = access_token("the-token", {"exp": 1_900_000_000}, "https://mcp.example.com/mcp")
    assert (granted.client_id, granted.subject, granted.scopes) == ("", "", [])
