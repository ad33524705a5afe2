"""A stand-in authorization server on loopback, for the OAuth tests that need one to misbehave, or
to count what it is asked, on purpose (tests/identity_provider.py runs a real one for the rest): it
publishes its metadata and its keys at /jwks (and at /configured-jwks, which no metadata names),
counting each fetch, answers /scripted-jwks and RFC 7662 introspection with whatever a test scripts
(and records how it was asked), and has routes that answer with HTML or never answer. Tests mint
its JWTs here."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
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
def serving_socket(app: Any, sock: socket.socket, *, lifespan: str = "off", **options: Any) -> Iterator[None]:
    """Serve `app` on `sock`; `options` go to uvicorn.Config (the HTTP server's limits, say); a request
    left hanging (at /hang) does not hold up the end."""
    with serve_on_loopback(app, lifespan=lifespan, sock=sock, **options):
        yield


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return public | {"kid": self.kid, "alg": "RS256", "use": "sig"}


class AuthorizationServer:
    """The stand-in's state: what it publishes and answers, and what it was asked."""

    def __init__(self, issuer: str, *, subject: str = "alice@example.com") -> None:
        self.issuer = issuer
        self.subject = subject
        self.key = SigningKey("key-1")
        self.opaque: dict[str, dict[str, Any]] = {}
        """Introspection's answers, by token; any other token is inactive."""
        self.jwks_fetches = 0
        self.introspected_by: str | None = None
        """The Authorization header of the last introspection request: how its caller signed in."""
        self.introspected_form: dict[str, str] = {}
        self.introspection_status = 200
        self.configured_jwks_fetches = 0
        """Fetches of /configured-jwks, a key set no discovery document names: only a server told its
        JWKS URL finds it."""
        self.scripted_jwks: Any = {"keys": [self.key.jwk()]}
        """What /scripted-jwks answers, with `Cache-Control: max-age=1`: its keys, or something else."""

    def mint(self, *, audience: str, scopes: list[str], lifetime: int = 600, **changes: Any) -> str:
        """A signed JWT access token; `changes` override or (as None) drop claims."""
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

    async def jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [self.key.jwk()]})

    async def configured_jwks(self, request: Request) -> JSONResponse:
        self.configured_jwks_fetches += 1
        return JSONResponse({"keys": [self.key.jwk()]})

    async def scripted(self, request: Request) -> JSONResponse:
        return JSONResponse(self.scripted_jwks, headers={"Cache-Control": "max-age=1"})

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
                "jwks_uri": f"{self.issuer}/jwks",
                "introspection_endpoint": f"{self.issuer}/introspect",
                "response_types_supported": ["code"],
                "scopes_supported": [READ, WRITE],
            }
        )

    def app(self) -> Starlette:
        routes = [
            Route("/jwks", self.jwks),
            Route("/configured-jwks", self.configured_jwks),
            Route("/scripted-jwks", self.scripted),
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
