"""A real OAuth 2.1 authorization server on loopback, for the tests: the mcp SDK's own
authorization-server routes (metadata, dynamic client registration, authorize with PKCE, token),
with a provider that signs RS256 JWT access tokens (RFC 9068) for the resource the client names
(RFC 8707), publishes its keys at /jwks, can rotate them, and answers RFC 7662 introspection for
the opaque tokens it also issues. Consent is automatic, as a test's user always agrees."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.auth import OAuthClientProvider
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.routes import create_auth_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.conftest import serve_on_loopback

READ, WRITE = "census:read", "census:write"


def bound_socket() -> socket.socket:
    """A loopback socket bound now, so that a server's URL is known before its app is built."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving_socket(app: Any, sock: socket.socket, *, lifespan: str = "off") -> Iterator[None]:
    """Serve `app` on `sock`; a request left hanging (at /hang) does not hold up the end."""
    with serve_on_loopback(app, lifespan=lifespan, sock=sock):
        yield


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return public | {"kid": self.kid, "alg": "RS256", "use": "sig"}


class AuthorizationServer:
    """The provider behind the SDK's routes, and what tests need to mint tokens by hand."""

    def __init__(self, issuer: str, *, subject: str = "alice@example.com") -> None:
        self.issuer = issuer
        self.subject = subject
        self.key = SigningKey("key-1")
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.opaque: dict[str, dict[str, Any]] = {}
        self.jwks_fetches = 0
        self.more_keys: list[dict[str, Any]] = []
        """Public keys published beside the current one (JWKs), for tokens a test signs itself."""
        self.introspected_by: str | None = None
        self.introspected_form: dict[str, str] = {}
        self.introspection_status = 200
        """The Authorization header of the last introspection request: how its caller signed in."""
        self.configured_jwks_fetches = 0
        """Fetches of /configured-jwks, a key set no discovery document names: only a server told its
        JWKS URL finds it."""
        self.issue_opaque = False

    def rotate_key(self) -> None:
        self.key = SigningKey(f"key-{int(self.key.kid.split('-')[1]) + 1}")

    def mint(self, *, audience: str, scopes: list[str], lifetime: int = 600, **changes: Any) -> str:
        """A signed JWT access token; `changes` override or (as None) drop claims, for bad tokens."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": self.subject,
            "client_id": "test-client",
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(8),
        }
        claims = {key: value for key, value in (claims | changes).items() if value is not None}
        return jwt.encode(
            claims, self.key.private, algorithm="RS256", headers={"kid": self.key.kid, "typ": "at+jwt"}
        )

    # The OAuthAuthorizationServerProvider protocol

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        # Policy of this server: a registered client may ask for any scope it offers.
        self.clients[str(client_info.client_id)] = client_info.model_copy(update={"scope": f"{READ} {WRITE}"})

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = AuthorizationCode(
            code=secrets.token_urlsafe(24),
            scopes=params.scopes or [READ],
            expires_at=time.time() + 300,
            client_id=str(client.client_id),
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=self.subject,
        )
        self.codes[code.code] = code
        return construct_redirect_uri(str(params.redirect_uri), code=code.code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, code: AuthorizationCode
    ) -> OAuthToken:
        del self.codes[code.code]
        audience = code.resource or ""
        if self.issue_opaque:
            token = secrets.token_urlsafe(32)
            now = int(time.time())
            self.opaque[token] = {
                "active": True,
                "iss": self.issuer,
                "aud": audience,
                "sub": self.subject,
                "client_id": code.client_id,
                "scope": " ".join(code.scopes),
                "exp": now + 600,
            }
        else:
            token = self.mint(audience=audience, scopes=code.scopes, client_id=code.client_id)
        return OAuthToken(
            access_token=token, token_type="Bearer", expires_in=600, scope=" ".join(code.scopes)
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return None

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        raise NotImplementedError

    async def load_access_token(self, token: str) -> AccessToken | None:
        return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        return None

    # Routes beyond the SDK's

    async def jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [self.key.jwk(), *self.more_keys]})

    async def configured_jwks(self, request: Request) -> JSONResponse:
        self.configured_jwks_fetches += 1
        return JSONResponse({"keys": [self.key.jwk()]})

    async def introspect(self, request: Request) -> JSONResponse:
        self.introspected_by = request.headers.get("authorization")
        form = await request.form()
        self.introspected_form = {key: str(value) for key, value in form.items()}
        claims = self.opaque.get(str(form.get("token")), {"active": False})
        return JSONResponse(claims, status_code=self.introspection_status)

    async def not_json(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("<html>Service Unavailable</html>")

    async def hang(self, request: Request) -> PlainTextResponse:
        await anyio.sleep(30)
        return PlainTextResponse("too late")

    async def openid_configuration(self, request: Request) -> JSONResponse:
        """OpenID discovery, as real identity providers publish it: where the keys are."""
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "registration_endpoint": f"{self.issuer}/register",
                "jwks_uri": f"{self.issuer}/jwks",
                "introspection_endpoint": f"{self.issuer}/introspect",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": [READ, WRITE],
            }
        )

    def app(self) -> Starlette:
        # Through AuthSettings, whose URL keeps no trailing slash: the client compares issuers as text.
        issuer = AuthSettings(issuer_url=self.issuer, resource_server_url=None).issuer_url  # type: ignore[arg-type]
        routes = create_auth_routes(
            self,  # type: ignore[arg-type]
            issuer,
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=[READ, WRITE], default_scopes=[READ]
            ),
        )
        routes += [
            Route("/jwks", self.jwks),
            Route("/configured-jwks", self.configured_jwks),
            Route("/not-json", self.not_json, methods=["GET", "POST"]),
            Route("/hang", self.hang, methods=["GET", "POST"]),
            Route("/introspect", self.introspect, methods=["POST"]),
            Route("/.well-known/openid-configuration", self.openid_configuration),
        ]
        return Starlette(routes=routes)


@contextmanager
def running_authorization_server() -> Iterator[AuthorizationServer]:
    sock = bound_socket()
    server = AuthorizationServer(f"http://127.0.0.1:{sock.getsockname()[1]}")
    with serving_socket(server.app(), sock):
        yield server


class MemoryTokens:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def signing_in(server_url: str, storage: MemoryTokens | None = None) -> OAuthClientProvider:
    """The SDK client's OAuth flow, with a user who always consents: the authorize URL is followed
    by a plain HTTP client, and the code is read from the redirect it answers with."""
    answered: list[AuthorizationCodeResult] = []

    async def open_browser(url: str) -> None:
        async with httpx2.AsyncClient() as browser:
            redirect = await browser.get(url, follow_redirects=False)
        query = parse_qs(urlsplit(redirect.headers["location"]).query)
        answered.append(AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0]))

    async def callback() -> AuthorizationCodeResult:
        return answered.pop()

    metadata = OAuthClientMetadata(
        client_name="census-mcp tests",
        redirect_uris=[AnyUrl("http://127.0.0.1:1/callback")],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )
    return OAuthClientProvider(
        server_url,
        metadata,
        storage or MemoryTokens(),
        redirect_handler=open_browser,
        callback_handler=callback,
    )
