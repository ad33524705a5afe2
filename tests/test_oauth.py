"""OAuth mode against oidc-provider (OpenID Certified) run as a real process on loopback
(tests/identity_provider.py): the SDK's own client registers itself, signs a person in through the
provider's pages and steps up to write; scopes decide what a caller sees and may do; JWTs and
opaque tokens are both taken; a key removed from the provider's set stops verifying without a
restart; and every kind of bad token is refused. The stand-in of tests/oauth_server.py serves only
where a test needs an authorization server that misbehaves, or counts what it is asked, on
purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import signal
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
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.shared.auth import OAuthToken
from pydantic import SecretStr

from census_mcp.auth import oauth
from census_mcp.auth.oauth import (
    ALGORITHMS,
    TokenKindVerifier,
    _usable_keys,
    access_token,
    is_id_token,
    key_lifetime,
    scopes_of,
)
from census_mcp.http import create_http_app, uvicorn_limits
from census_mcp.settings import Settings, SettingsError
from tests.conftest import Sandbox
from tests.helpers import call_ok, said_by
from tests.identity_provider import (
    INTROSPECTOR,
    PREREGISTERED,
    SERVICE_OPAQUE,
    AuthorizationRefused,
    IdentityProvider,
    MemoryTokens,
    Person,
    keys_for_every_algorithm,
    rsa_key,
    running_identity_provider,
    signing_in,
)
from tests.oauth_server import (
    READ,
    WRITE,
    AuthorizationServer,
    bound_socket,
    running_authorization_server,
    serving_socket,
)
from tests.test_guarded_writes import READ_TOOLS, WRITE_TOOLS
from tests.test_real_clients import census_mcp_over_http
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio
OAUTH_LOG = "census_mcp.auth.oauth"


@pytest.fixture
def api_version() -> str:
    """One API version: the token checks never read it (the tools are tested on both elsewhere)."""
    return "v2"


@pytest.fixture(scope="module")
def identity_provider() -> Iterator[IdentityProvider]:
    """One oidc-provider for the module, publishing a key for every algorithm (RS256 signs)."""
    with running_identity_provider(keys_for_every_algorithm()) as provider:
        yield provider


@pytest.fixture(scope="module")
def authorization_server() -> Iterator[AuthorizationServer]:
    """The SDK-routes server, for the tests that need it to misbehave or count."""
    with running_authorization_server() as server:
        yield server


@dataclass
class Served:
    url: str
    provider: IdentityProvider

    def token(self, scopes: tuple[str, ...] = (READ,)) -> str:
        """An access token the provider issued for this server (client credentials)."""
        return self.provider.token(self.url, scopes)

    def mint(self, scopes: tuple[str, ...] = (READ,), **changes: Any) -> str:
        """A token signed with the provider's key, shaped as `changes` say (expired, other claims...)."""
        return self.provider.mint(audience=self.url, scopes=list(scopes), **changes)


@contextmanager
def oauth_server(sandbox: Sandbox, issuer: str, **overrides: Any) -> Iterator[str]:
    """census-mcp over HTTP in OAuth mode, its audience its own URL (known before it is built): that URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    settings = sandbox.settings(transport="http", auth="oauth", port=port, oauth_issuer=issuer, **overrides)
    with serving_socket(create_http_app(settings), sock, lifespan="on", **uvicorn_limits(settings)):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def served(sandbox: Sandbox, identity_provider: IdentityProvider) -> Iterator[Served]:
    with oauth_server(sandbox, identity_provider.issuer) as url:
        yield Served(url, identity_provider)


@asynccontextmanager
async def with_token(url: str, token: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


@asynccontextmanager
async def signed_in(url: str, person: Person, storage: MemoryTokens) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(auth=signing_in(url, person, storage), timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _post(
    url: str, token: str | None, tool: str = "list_sources", arguments: dict[str, Any] | None = None
) -> httpx2.Response:
    return httpx2.post(url, **_call_of(token, tool, arguments), timeout=30)


def _call_of(
    token: str | None, tool: str = "list_sources", arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A tools/call request's headers and body, for httpx2."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": tool, "arguments": arguments or {}, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    return {"json": body, "headers": headers | {"Mcp-Method": "tools/call", "Mcp-Name": tool}}


# Pure functions first: a mutant of them is caught in a second, not after the whole module.


def test_the_lifetime_of_a_key_set_is_its_max_age_within_bounds() -> None:
    lifetimes = {
        "public, max-age=2": 2,
        "max-age=60, must-revalidate": 60,
        'max-age="120"': 120,
        "s-maxage=10, max-age=20": 20,
        "MAX-AGE=30": 30,
        "max-age=0": 1,
        "max-age=86400": 3600,
        "no-cache": 300,
        "no-store": 300,
        "": 300,
        "s-maxage=10": 300,
    }
    assert {header: key_lifetime(header) for header in lifetimes} == lifetimes
    assert key_lifetime(None) == 300


def test_of_a_published_set_only_the_signing_keys_pyjwt_knows_are_used() -> None:
    signing, unmarked, encrypting = rsa_key("signing"), rsa_key("unmarked"), rsa_key("encrypting")
    published = [
        encrypting.jwk() | {"use": "enc"},
        {"kty": "unknown", "kid": "strange", "use": "sig"},
        signing.jwk(),
        {name: value for name, value in unmarked.jwk().items() if name != "use"},
    ]
    assert [key.key_id for key in _usable_keys(published)] == ["signing", "unmarked"]


@pytest.mark.parametrize("claim", ["nonce", "at_hash", "c_hash", "s_hash"])
def test_an_id_token_is_known_by_a_claim_only_id_tokens_carry_and_no_scope(claim: str) -> None:
    claims = {"iss": "https://id.example.com", "sub": "alice", "aud": "app", "exp": 1_900_000_000}
    assert is_id_token(claims | {claim: "x"})
    assert not is_id_token(claims)
    # Keycloak before 25 copies the nonce into access tokens, which grant scopes.
    assert not is_id_token(claims | {claim: "x", "scope": READ})
    assert not is_id_token(claims | {claim: "x", "scp": [READ]})


@dataclass
class Recording(TokenVerifier):
    """A verifier that notes the tokens it is asked about and refuses them."""

    asked: list[str]

    async def verify_token(self, token: str) -> AccessToken | None:
        self.asked.append(token)
        return None


SIGNED = jwt.encode({"sub": "x"}, "a-secret-long-enough-for-hs256-0123456789", algorithm="HS256")


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (SIGNED, "jwt"),
        ("opaque-token-without-dots", "opaque"),
        ("three.dotted.parts", "opaque"),
        (f"{SIGNED}.with.five", "opaque"),
        (SIGNED.split(".", 1)[0] + ".two-parts", "opaque"),
    ],
)
async def test_a_token_goes_to_the_keys_if_it_parses_as_a_jwt_else_to_introspection(
    token: str, kind: str
) -> None:
    jwts, opaque = Recording([]), Recording([])
    assert await TokenKindVerifier(jwts, opaque).verify_token(token) is None
    assert (jwts.asked, opaque.asked) == (([token], []) if kind == "jwt" else ([], [token]))
    # With one of the two endpoints unknown, what it would check goes to the other, or is refused.
    assert await TokenKindVerifier(None, opaque).verify_token(token) is None
    assert opaque.asked[-1] == token
    assert await TokenKindVerifier(jwts, None).verify_token(token) is None
    assert len(jwts.asked) == (2 if kind == "jwt" else 0)


async def test_the_sdk_client_registers_itself_signs_in_and_writes(served: Served, sandbox: Sandbox) -> None:
    """Dynamic registration, with the provider's defaults: census-mcp's 401 names both scopes, so
    the client registers for both, and the person's one sign-in lets it read and write."""
    person, storage = Person(), MemoryTokens()
    async with signed_in(served.url, person, storage) as client:
        assert await _tool_names(client) == READ_TOOLS | WRITE_TOOLS
        result = await call_ok(client, "list_sources", {"test_status": "failed"})
        assert result.structured_content is not None
        failing = sum(s["last_test_succeeded"] is False for s in sandbox.workspace.sources.values())
        assert result.structured_content["total"] == failing
        await call_ok(client, "update_source", {"source_id": 2, "label": "Signed in"})
    assert sandbox.workspace.sources[2]["label"] == "Signed in"
    assert storage.client_info is not None
    assert {READ, WRITE} <= set((storage.client_info.scope or "").split())
    assert person.signed_in == 1
    assert storage.tokens is not None
    claims = _claims(storage.tokens.access_token)
    assert (claims["aud"], claims["sub"], claims["client_id"]) == (
        served.url,
        person.login,
        storage.client_info.client_id,
    )
    assert jwt.get_unverified_header(storage.tokens.access_token)["typ"] == "at+jwt"


async def test_a_client_holding_a_token_for_reading_steps_up_to_write(
    served: Served, sandbox: Sandbox
) -> None:
    """The client registered itself at its first sign-in; now it holds a token for reading alone
    (the provider granted less, or an older census-mcp asked for less). Its first write gets 403
    insufficient_scope naming both scopes; the SDK signs the person in again for both, which its
    registration allows, and the write goes through."""
    person, storage = Person(), MemoryTokens()
    async with signed_in(served.url, person, storage) as client:
        await client.list_tools()
    assert storage.client_info is not None
    tokens = await served.provider.sign_in(person, storage.client_info, READ, served.url)
    storage.tokens = OAuthToken.model_validate(tokens)
    async with signed_in(served.url, person, storage) as client:
        assert await _tool_names(client) == READ_TOOLS
        await call_ok(client, "update_source", {"source_id": 2, "label": "Stepped up"})
        assert await _tool_names(client) == READ_TOOLS | WRITE_TOOLS
    assert sandbox.workspace.sources[2]["label"] == "Stepped up"
    assert person.signed_in == 3
    assert {READ, WRITE} <= set(person.asked[-1].split())
    assert storage.tokens is not None
    assert {READ, WRITE} <= set(_claims(storage.tokens.access_token)["scope"].split())


async def test_a_client_registered_for_reading_alone_cannot_step_up(served: Served, sandbox: Sandbox) -> None:
    """Why census-mcp's sign-in names both scopes: a client that registered itself for reading
    alone (as it did when the 401 named only census:read) asks for the write scope in vain, as
    RFC 7591 lets a provider refuse."""
    person, storage = Person(), MemoryTokens()
    storage.client_info = served.provider.register(f"{READ} offline_access")
    tokens = await served.provider.sign_in(person, storage.client_info, READ, served.url)
    storage.tokens = OAuthToken.model_validate(tokens)
    with pytest.raises(BaseException) as refused:  # noqa: PT011 - the SDK wraps it in task groups
        async with signed_in(served.url, person, storage) as client:
            await call_ok(client, "update_source", {"source_id": 2, "label": "Never written"})
    assert refused.group_contains(AuthorizationRefused, match="invalid_scope")
    assert sandbox.workspace.sources[2]["label"] != "Never written"


async def test_metadata_and_challenges_follow_the_specs(served: Served, sandbox: Sandbox) -> None:
    metadata_url = served.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    metadata = httpx2.get(metadata_url, timeout=10)
    assert metadata.status_code == 200
    # Fetched by clients from any origin (a browser-based one too), and cacheable by them.
    assert metadata.headers["access-control-allow-origin"] == "*"
    assert metadata.headers["cache-control"] == "public, max-age=3600"
    assert metadata.json() == {
        "resource": served.url,
        "authorization_servers": [served.provider.issuer],
        "scopes_supported": [READ, WRITE],
        "bearer_methods_supported": ["header"],
        "resource_name": "census-mcp",
    }
    # Nothing else is published under /.well-known/, the root's metadata included.
    for elsewhere in ("/.well-known/oauth-protected-resource", "/.well-known/openid-configuration"):
        answer = httpx2.get(served.url.replace("/mcp", elsewhere), timeout=10)
        assert answer.status_code == 404
        assert answer.json() == {"error": "not_found", "error_description": "Nothing is published here."}
        assert "www-authenticate" not in answer.headers
    missing = _post(served.url, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == (
        f'Bearer scope="{READ} {WRITE}", resource_metadata="{metadata_url}"'
    )
    refused = _post(served.url, "not-a-token-anyone-issued")
    assert f'scope="{READ} {WRITE}"' in refused.headers["www-authenticate"]
    read_only = served.token((READ,))
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
    no_read = _post(served.url, served.mint(("something:else",)))
    assert no_read.status_code == 403
    assert no_read.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="{READ}", resource_metadata="{metadata_url}"'
    )
    expired = _post(served.url, served.mint(lifetime=-3600))
    assert expired.status_code == 401
    assert expired.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token was not accepted.", '
        f'scope="{READ} {WRITE}", resource_metadata="{metadata_url}"'
    )
    assert 2 in sandbox.workspace.sources


async def test_a_token_without_the_write_scope_sees_and_may_call_only_the_reads(served: Served) -> None:
    async with with_token(served.url, served.token((READ,))) as client:
        assert await _tool_names(client) == READ_TOOLS
        await call_ok(client, "get_source", {"source_id": 2})
    async with with_token(served.url, served.token((READ, WRITE))) as client:
        assert await _tool_names(client) == READ_TOOLS | WRITE_TOOLS


@pytest.mark.parametrize("scp", [f"{READ} {WRITE}", [READ, WRITE]], ids=["string", "list"])
async def test_scopes_in_scp_count_as_a_string_or_a_list(served: Served, sandbox: Sandbox, scp: Any) -> None:
    """Entra ID sends `scp` as one space-separated string, Okta as a list; either grants its scopes."""
    async with with_token(served.url, served.mint(scope=None, scp=scp)) as client:
        assert await _tool_names(client) == READ_TOOLS | WRITE_TOOLS
        await call_ok(client, "update_source", {"source_id": 2, "label": "Via scp"})
    assert sandbox.workspace.sources[2]["label"] == "Via scp"


async def test_read_only_wins_over_every_scope(sandbox: Sandbox, identity_provider: IdentityProvider) -> None:
    with oauth_server(sandbox, identity_provider.issuer, read_only=True) as url:
        async with with_token(url, identity_provider.token(url, (READ, WRITE))) as client:
            assert await _tool_names(client) == READ_TOOLS


ENTRA_APP_ID = "6f1c1b8e-3f0a-4d8e-9a57-0c1f2d3e4b5a"


@pytest.mark.parametrize("audience", [ENTRA_APP_ID, "api://census-mcp"])
def test_the_audience_may_be_the_providers_own_name_for_the_api(
    sandbox: Sandbox, identity_provider: IdentityProvider, audience: str
) -> None:
    """Entra ID puts the API's application ID (or its api:// URI) in `aud`, not a URL: the server
    still names its own URL as the resource, and takes tokens for that audience only."""
    with oauth_server(sandbox, identity_provider.issuer, oauth_audience=audience) as url:
        metadata = httpx2.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
        assert metadata.json()["resource"] == url
        assert _post(url, identity_provider.mint(audience=audience, scopes=[READ])).status_code == 200
        assert _post(url, identity_provider.token(url)).status_code == 401
        other_app = identity_provider.mint(audience="0b7c5d2e-1a3f-4c6d-8e9f-a1b2c3d4e5f6", scopes=[READ])
        assert _post(url, other_app).status_code == 401


def test_a_token_for_an_entra_app_is_refused_when_the_audience_is_left_to_its_default(
    served: Served,
) -> None:
    assert _post(served.url, served.provider.mint(audience=ENTRA_APP_ID, scopes=[READ])).status_code == 401


def test_behind_a_proxy_the_public_url_is_the_resource_and_the_default_audience(
    sandbox: Sandbox, identity_provider: IdentityProvider
) -> None:
    public = "https://mcp.example.com/census"
    with oauth_server(sandbox, identity_provider.issuer, public_url=public) as url:
        root = url.removesuffix("/mcp")
        metadata = httpx2.get(f"{root}/.well-known/oauth-protected-resource/census/mcp")
        assert metadata.json()["resource"] == f"{public}/mcp"
        challenge = _post(url, None).headers["www-authenticate"]
        assert (
            'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/census/mcp"'
            in (challenge)
        )
        assert _post(url, identity_provider.token(f"{public}/mcp")).status_code == 200
        assert _post(url, identity_provider.token(url)).status_code == 401


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
    claims = _claims(served.token((READ, WRITE)))
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


def _hmac_with_the_public_key(served: Served) -> str:
    """The classic confusion: an HS256 token whose secret is the issuer's public key (signed by hand:
    PyJWT itself refuses to)."""
    claims = _claims(served.token((READ,)))
    signer = served.provider.keys[0]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": signer.kid}
    signed = ".".join(_b64(json.dumps(part).encode()) for part in (header, claims))
    public = json.dumps(signer.jwk()).encode()
    return f"{signed}.{_b64(hmac.new(public, signed.encode(), hashlib.sha256).digest())}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: s.mint(lifetime=-3600), id="expired"),
        pytest.param(lambda s: s.mint(aud="http://127.0.0.1:1/mcp"), id="wrong-audience"),
        pytest.param(lambda s: s.mint(iss="http://127.0.0.1:1"), id="wrong-issuer"),
        pytest.param(lambda s: s.mint(exp=None), id="no-expiry"),
        pytest.param(lambda s: s.mint(sub=None), id="no-subject"),
        pytest.param(lambda s: s.mint(key=rsa_key(s.provider.keys[0].kid)), id="signed-by-another-key"),
        pytest.param(lambda s: s.mint(headers={"kid": None}), id="no-key-id-among-several-keys"),
        pytest.param(_unsigned, id="alg-none"),
        pytest.param(lambda s: _tampered(s.token((READ,))), id="tampered"),
        pytest.param(_hmac_with_the_public_key, id="hs256-with-public-key"),
        pytest.param(lambda s: "not-a-jwt", id="garbage"),
    ],
)
def test_bad_tokens_are_refused(served: Served, forge: Any) -> None:
    answer = _post(served.url, forge(served))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.json()["error"] == "invalid_token"


def test_a_token_within_the_clock_skew_is_accepted(served: Served) -> None:
    assert _post(served.url, served.mint(lifetime=-20)).status_code == 200


def test_a_jwt_is_taken_by_its_type(
    sandbox: Sandbox, identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 9068's at+jwt always; a generic JWT (Entra ID's) unless --oauth-require-at-jwt; another
    kind of token never."""
    expected = [
        ("at+jwt", 200, 200),
        ("application/at+jwt", 200, 200),
        ("AT+JWT", 200, 200),
        ("JWT", 200, 401),
        ("jwt", 200, 401),
        ("application/jwt", 200, 401),
        (None, 200, 401),
        ("logout+jwt", 401, 401),
        ("token-introspection+jwt", 401, 401),
        ("dpop+jwt", 401, 401),
        (["at+jwt"], 401, 401),
    ]
    statuses: list[list[int]] = [[] for _ in expected]
    for require in (False, True):
        with (
            oauth_server(sandbox, identity_provider.issuer, oauth_require_at_jwt=require) as url,
            caplog.at_level(logging.INFO, logger=OAUTH_LOG),
        ):
            for (typ, *_), seen in zip(expected, statuses, strict=True):
                token = identity_provider.mint(audience=url, scopes=[READ], headers={"typ": typ})
                seen.append(_post(url, token).status_code)
    assert [(typ, *seen) for (typ, *_), seen in zip(expected, statuses, strict=True)] == expected
    refused = sum(seen.count(401) for seen in statuses)
    assert said_by(caplog, OAUTH_LOG) == ["Refused a JWT whose type is not an access token's"] * refused


async def test_an_id_token_is_refused_as_an_access_token(
    sandbox: Sandbox, identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A real ID token, for a server whose audience is the client's own ID (one app registration
    for both, as some Entra ID setups have): signed, from the issuer, for that audience, unexpired,
    and refused all the same."""
    with oauth_server(sandbox, identity_provider.issuer, oauth_audience=PREREGISTERED) as url:
        client = identity_provider.preregistered()
        signed = await identity_provider.sign_in(Person(), client, f"openid {READ}", url, nonce="n-1")
        id_token = signed["id_token"]
        assert _claims(id_token)["aud"] == PREREGISTERED
        with caplog.at_level(logging.INFO, logger=OAUTH_LOG):
            assert _post(url, id_token).status_code == 401
    assert said_by(caplog, OAUTH_LOG) == ["Refused an ID token offered as an access token"]


def test_a_key_id_never_published_is_refused_and_asks_for_the_keys_a_few_times_a_minute(
    served: Served,
) -> None:
    assert _post(served.url, served.token((READ,))).status_code == 200
    fetches = served.provider.requests("/jwks")
    for _ in range(5):  # keys known: nothing to read
        assert _post(served.url, served.mint()).status_code == 200
    assert served.provider.requests("/jwks") == fetches
    for n in range(20):
        invented = served.mint(headers={"kid": f"invented-{n}"})
        assert _post(served.url, invented).status_code == 401
    assert served.provider.requests("/jwks") <= fetches + 5


def test_a_jwks_url_given_is_used_instead_of_the_discovered_one(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    configured = f"{authorization_server.issuer}/configured-jwks"
    fetched = (authorization_server.configured_jwks_fetches, authorization_server.jwks_fetches)
    with oauth_server(sandbox, authorization_server.issuer, oauth_jwks_url=configured) as url:
        assert _post(url, authorization_server.mint(audience=url, scopes=[READ])).status_code == 200
    assert (authorization_server.configured_jwks_fetches, authorization_server.jwks_fetches) == (
        fetched[0] + 1,
        fetched[1],
    )


def test_tokens_signed_with_any_asymmetric_algorithm_providers_use_are_accepted(served: Served) -> None:
    keys = {key.alg: key for key in served.provider.keys}
    assert set(keys) == set(ALGORITHMS)
    statuses = {alg: _post(served.url, served.mint(key=key)).status_code for alg, key in keys.items()}
    assert statuses == dict.fromkeys(keys, 200)


# How census-mcp signs in to the provider's introspection endpoint (tests/oidc/provider.mjs).
INTROSPECTING = {"oauth_client_id": INTROSPECTOR[0], "oauth_client_secret": SecretStr(INTROSPECTOR[1])}


def test_one_deployment_takes_jwts_and_opaque_tokens(
    sandbox: Sandbox, identity_provider: IdentityProvider
) -> None:
    """The provider's metadata names a JWKS and an introspection endpoint: a token that parses as a
    JWT is checked against the keys, without asking anyone; any other is introspected."""
    with oauth_server(sandbox, identity_provider.issuer, **INTROSPECTING) as url:
        signed = identity_provider.token(url, (READ,))
        opaque = identity_provider.token(url, (READ, WRITE), SERVICE_OPAQUE)
        assert "." not in opaque
        introspected = identity_provider.requests("/token/introspection")
        assert _post(url, signed).status_code == 200
        assert identity_provider.requests("/token/introspection") == introspected
        assert _post(url, opaque, "update_source", {"source_id": 2, "label": "Opaque"}).status_code == 200
        assert identity_provider.requests("/token/introspection") == introspected + 1
        assert _post(url, "an-opaque-token-nobody-issued").status_code == 401
        assert _post(url, signed, "update_source", {"source_id": 2, "label": "Read only"}).status_code == 403
    assert sandbox.workspace.sources[2]["label"] == "Opaque"


def test_a_key_removed_from_the_providers_set_stops_verifying_within_the_sets_lifetime(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider sends its key set with max-age=2, then is restarted with another key in place of
    the one it signed with (as when a leaked key is revoked). census-mcp, not restarted, refuses
    the tokens signed with the removed key, issued and forged alike, within the set's lifetime of
    its being published, and takes the new key's."""
    lifetime = 2
    old, new = rsa_key("old"), rsa_key("new")
    with (
        running_identity_provider([old], jwks_max_age=lifetime) as provider,
        oauth_server(sandbox, provider.issuer, **INTROSPECTING) as url,
    ):
        issued = provider.token(url, (READ,))
        forged = provider.mint(audience=url, scopes=[READ, WRITE], sub="mallory")
        opaque = provider.token(url, (READ,), SERVICE_OPAQUE)
        assert [_post(url, token).status_code for token in (issued, forged, opaque)] == [200, 200, 200]
        with caplog.at_level(logging.INFO, logger=OAUTH_LOG):
            provider.restart([new])
            published = time.monotonic()
            while _post(url, issued).status_code == 200:
                assert time.monotonic() - published < lifetime + 3
                time.sleep(0.1)
        assert _post(url, forged).status_code == 401
        assert _post(url, provider.token(url, (READ,))).status_code == 200
    assert issued not in caplog.text


def test_keys_that_cannot_be_read_again_are_kept_a_grace_period_then_dropped(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider sends its one key with max-age=1: the set is read again about each second, in
    the background, and what was remembered of tokens stands (an unchanged set changes nothing).
    Then the provider stops answering (SIGSTOP) as the set's lifetime ends: a token is still
    checked at once, with the set kept, not after the 5 s a reading may take. Then it is gone: the
    set is kept KEYS_GRACE_SECONDS (here 2 s) past its lifetime, each failed reading logged, then
    dropped, once; when the provider is back, its keys are read again at the next try."""
    monkeypatch.setattr(oauth, "KEYS_GRACE_SECONDS", 2.0)
    with (
        running_identity_provider([rsa_key()], jwks_max_age=1) as provider,
        oauth_server(sandbox, provider.issuer, **INTROSPECTING) as url,
        caplog.at_level(logging.INFO, logger=OAUTH_LOG),
    ):
        opaque = provider.token(url, (READ,), SERVICE_OPAQUE)
        read = time.monotonic()
        while time.monotonic() - read < 2.5:
            assert _post(url, provider.mint(audience=url, scopes=[READ])).status_code == 200
            assert _post(url, opaque).status_code == 200
            time.sleep(0.1)
        # One reading, then one a second or so; the opaque token introspected once.
        assert 2 <= provider.requests("/jwks") <= 4
        assert provider.requests("/token/introspection") == 1
        # The set's one key verifies a token that names no key id.
        assert (
            _post(url, provider.mint(audience=url, scopes=[READ], headers={"kid": None})).status_code == 200
        )
        provider.process.send_signal(signal.SIGSTOP)
        time.sleep(1.2)
        unseen = provider.mint(audience=url, scopes=[READ])
        assert httpx2.post(url, **_call_of(unseen), timeout=2.5).status_code == 200
        provider.process.kill()
        gone = time.monotonic()
        while _post(url, unseen).status_code == 200:
            assert time.monotonic() - gone < 5
            time.sleep(0.1)
        time.sleep(1.2)  # one more try fails: the set is dropped once, not again
        provider.restart(provider.keys)
        back = time.monotonic()
        while _post(url, unseen).status_code != 200:
            assert time.monotonic() - back < 3  # read again within the retry interval (here 1 s)
            time.sleep(0.1)
    said = said_by(caplog, OAUTH_LOG)
    # A reading cut off as the provider is killed fails as ReadError, later ones as ConnectError.
    kept_line = r"Could not read the issuer's keys \((Read|Connect)Error\): the last ones are kept .*"
    kept = [line for line in said if re.fullmatch(kept_line, line)]
    assert 1 <= len(kept) <= 3
    dropped = (
        "Could not read the issuer's keys (ConnectError) past their grace period: JWT access tokens are "
        "refused until they can be read."
    )
    assert said.count(dropped) == 1
    assert unseen not in caplog.text


def test_a_key_set_read_again_that_is_no_key_set_leaves_the_last_one_in_place(
    sandbox: Sandbox,
    authorization_server: AuthorizationServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = f"{authorization_server.issuer}/scripted-jwks"
    try:
        with (
            oauth_server(sandbox, authorization_server.issuer, oauth_jwks_url=keys) as url,
            caplog.at_level(logging.INFO, logger=OAUTH_LOG),
        ):
            assert _post(url, authorization_server.mint(audience=url, scopes=[READ])).status_code == 200
            authorization_server.scripted_jwks = {"keys": "gone"}
            waited = time.monotonic()
            kept = "Could not read the issuer's keys (ValueError): the last ones are kept"
            while not any(line.startswith(kept) for line in said_by(caplog, OAUTH_LOG)):
                assert time.monotonic() - waited < 5
                time.sleep(0.1)
            assert _post(url, authorization_server.mint(audience=url, scopes=[READ])).status_code == 200
    finally:
        authorization_server.scripted_jwks = {"keys": [authorization_server.key.jwk()]}


def test_an_introspected_token_must_be_active_for_this_server_from_this_issuer_and_unexpired(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    introspection = f"{authorization_server.issuer}/introspect"
    secret = "introspection-secret-4f1a"
    with oauth_server(
        sandbox,
        authorization_server.issuer,
        oauth_introspection_url=introspection,
        oauth_client_id="census-mcp",
        oauth_client_secret=SecretStr(secret),
    ) as url:
        now = int(time.time())
        good = {"active": True, "iss": authorization_server.issuer, "aud": url, "exp": now + 600}
        good["scope"] = READ
        answers: dict[str, dict[str, Any]] = {
            "good": good,
            "no issuer named": {**good, "iss": None},
            "one of its audiences": {**good, "aud": ["https://other.example/mcp", url]},
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
            statuses[case] = _post(url, token).status_code
    accepted = ["good", "no issuer named", "one of its audiences", "expired within the clock skew"]
    accepted.append("expiry with a fraction")
    assert statuses == {case: 200 if case in accepted else 401 for case in answers}
    # RFC 7662: the introspecting server signs in, with the client it was given (HTTP Basic).
    basic = base64.b64encode(f"census-mcp:{secret}".encode()).decode()
    assert authorization_server.introspected_by == f"Basic {basic}"


def test_a_refused_token_leaves_one_line_saying_why_and_not_the_token(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    expired = served.mint(lifetime=-3600)
    with caplog.at_level(logging.INFO, logger=OAUTH_LOG):
        assert _post(served.url, expired).status_code == 401
    said = said_by(caplog, OAUTH_LOG)
    assert said == ["Refused an access token (ExpiredSignatureError)"]


@pytest.mark.parametrize(
    ("keys_at", "document", "reason"),
    [
        ("http://127.0.0.1:9/jwks", None, "ConnectError"),
        ("/not-json", None, "JSONDecodeError"),
        ("/scripted-jwks", [{"keys": []}], "ValueError"),
        ("/scripted-jwks", {"keys": "none"}, "ValueError"),
        ("/scripted-jwks", {"keys": ["not a key"]}, "ValueError"),
        ("/scripted-jwks", {"no keys": []}, "ValueError"),
    ],
)
def test_keys_that_cannot_be_had_refuse_the_token_not_the_server(
    sandbox: Sandbox,
    authorization_server: AuthorizationServer,
    caplog: pytest.LogCaptureFixture,
    keys_at: str,
    document: Any,
    reason: str,
) -> None:
    keys = keys_at if keys_at.startswith("http") else f"{authorization_server.issuer}{keys_at}"
    authorization_server.scripted_jwks = document
    try:
        with (
            oauth_server(sandbox, authorization_server.issuer, oauth_jwks_url=keys) as url,
            caplog.at_level(logging.INFO, logger=OAUTH_LOG),
        ):
            answer = _post(url, authorization_server.mint(audience=url, scopes=[READ]))
    finally:
        authorization_server.scripted_jwks = {"keys": [authorization_server.key.jwk()]}
    assert answer.status_code == 401
    said = said_by(caplog, OAUTH_LOG)
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
    answering = (
        answered_at if answered_at.startswith("http") else f"{authorization_server.issuer}{answered_at}"
    )
    now = int(time.time())
    token = f"opaque-answered-with-{status}"
    authorization_server.opaque[token] = {"active": True, "scope": READ, "exp": now + 600}
    authorization_server.introspection_status = status
    try:
        with oauth_server(sandbox, authorization_server.issuer, oauth_introspection_url=answering) as url:
            authorization_server.opaque[token]["aud"] = url
            with caplog.at_level(logging.INFO, logger=OAUTH_LOG):
                answer = _post(url, token)
    finally:
        authorization_server.introspection_status = 200
    assert answer.status_code == 401
    said = said_by(caplog, OAUTH_LOG)
    assert said == ([] if reason is None else [f"Could not introspect an access token ({reason})"])


def test_an_introspection_answer_that_is_not_an_object_refuses_the_token(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    authorization_server.opaque["opaque-a-list"] = [{"active": True}]  # type: ignore[assignment]
    introspection = f"{authorization_server.issuer}/introspect"
    with oauth_server(sandbox, authorization_server.issuer, oauth_introspection_url=introspection) as url:
        assert _post(url, "opaque-a-list").status_code == 401


def test_a_client_id_alone_introspects_without_signing_in(
    sandbox: Sandbox, authorization_server: AuthorizationServer
) -> None:
    """A public client has no secret: nothing to sign in with, so no Authorization header."""
    introspection = f"{authorization_server.issuer}/introspect"
    now = int(time.time())
    introspecting = {"oauth_introspection_url": introspection, "oauth_client_id": "census-mcp"}
    with oauth_server(sandbox, authorization_server.issuer, **introspecting) as url:
        authorization_server.opaque["opaque-public"] = {
            "active": True,
            "aud": url,
            "exp": now + 600,
            "scope": READ,
        }
        assert _post(url, "opaque-public").status_code == 200
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


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: None, id="no-token"),
        pytest.param(lambda s: _tampered(s.token()), id="tampered"),
        pytest.param(lambda s: s.mint(lifetime=-3600), id="expired"),
        pytest.param(lambda s: s.mint(aud="http://127.0.0.1:1/mcp"), id="wrong-audience"),
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
    token = served.token()
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
    token = served.token()
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
    assert _post(served.url, served.token()).status_code == 200


def test_a_jwt_header_is_measured_before_it_is_decoded(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telling a JWT from an opaque token decodes its header: one of 4,096 characters is decoded
    (and, cut short, is no JSON), one of 4,097 and a token of two parts are not; all are refused."""
    decoded: list[str] = []
    decode = jwt.get_unverified_header

    def counted(token: str) -> dict[str, Any]:
        decoded.append(token)
        return decode(token)

    monkeypatch.setattr(jwt, "get_unverified_header", counted)
    header = _b64(json.dumps({"alg": "RS256", "kid": served.provider.keys[0].kid, "x": "y" * 3100}).encode())
    fits, too_large = (f"{head}.{_b64(b'{}')}.{_b64(b'x')}" for head in (header[:4096], header[:4097]))
    for token in (fits, too_large, "only.two"):
        assert _post(served.url, token).status_code == 401
    assert decoded == [fits]


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
