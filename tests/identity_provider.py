"""oidc-provider (panva/node-oidc-provider, OpenID Certified) as the OAuth tests' identity provider: a
real process on loopback, started from the configuration tests/oidc/provider.mjs keeps, on the
Node.js package.json pins; and a person signing in through its dev sign-in pages (devInteractions)
without a browser, for the SDK's own OAuth client."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import selectors
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from tests.oauth_server import READ
from tests.test_real_clients import node_tool

PROVIDER = Path(__file__).parent / "oidc" / "provider.mjs"
# The clients tests/oidc/provider.mjs registers, with their secrets.
INTROSPECTOR = ("census-mcp", "census-mcp-introspection-secret")
SERVICE_JWT = ("service-jwt", "service-jwt-secret")
SERVICE_OPAQUE = ("service-opaque", "service-opaque-secret")
PREREGISTERED = "preregistered"
REDIRECT_URI = "http://127.0.0.1:1/callback"
_STARTS_WITHIN_SECONDS = 30.0


@dataclass(frozen=True)
class ProviderKey:
    """A signing key the provider publishes, whose private half the tests hold too (to forge with)."""

    kid: str
    alg: str
    private: Any

    def jwk(self, *, private: bool = False) -> dict[str, Any]:
        key = self.private if private else self.private.public_key()
        as_jwk: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(self.alg).to_jwk(key))
        return as_jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}


def rsa_key(kid: str | None = None, alg: str = "RS256") -> ProviderKey:
    return ProviderKey(kid or f"rsa-{secrets.token_hex(4)}", alg, rsa.generate_private_key(65537, 2048))


def keys_for_every_algorithm() -> list[ProviderKey]:
    """A key for each algorithm identity providers sign access tokens with (RS256 first: it signs)."""
    rsa_private = rsa.generate_private_key(65537, 2048)
    keys = [ProviderKey(f"k-{alg}", alg, rsa_private) for alg in ("RS256", "RS384", "RS512")]
    keys += [ProviderKey(f"k-{alg}", alg, rsa_private) for alg in ("PS256", "PS384", "PS512")]
    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    keys += [ProviderKey(f"k-{alg}", alg, ec.generate_private_key(curve)) for alg, curve in curves.items()]
    return [*keys, ProviderKey("k-EdDSA", "EdDSA", ed25519.Ed25519PrivateKey.generate())]


@dataclass
class IdentityProvider:
    """A running oidc-provider, and what tests need of it."""

    issuer: str
    keys: list[ProviderKey]
    jwks_max_age: int | None
    process: subprocess.Popen[str]

    @property
    def port(self) -> int:
        port = urlsplit(self.issuer).port
        assert port is not None
        return port

    @cached_property
    def metadata(self) -> dict[str, Any]:
        answer = httpx2.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        answer.raise_for_status()
        document: dict[str, Any] = answer.json()
        return document

    def token(
        self,
        resource: str,
        scopes: tuple[str, ...] = (READ,),
        client: tuple[str, str] = SERVICE_JWT,
    ) -> str:
        """An access token the provider issues a service by client credentials, for `resource`."""
        answer = httpx2.post(
            self.metadata["token_endpoint"],
            data={"grant_type": "client_credentials", "scope": " ".join(scopes), "resource": resource},
            auth=client,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def mint(
        self,
        *,
        audience: str,
        scopes: list[str],
        lifetime: int = 600,
        key: ProviderKey | None = None,
        headers: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        """A JWT access token as the provider's own are, signed with its key (or `key`): `changes`
        override claims, or (as None) drop them; `headers`, the JOSE header's."""
        signer = key or self.keys[0]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "alice@example.com",
            "client_id": "test-client",
            "scope": " ".join(scopes),
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_hex(8),
        }
        claims = {name: value for name, value in (claims | changes).items() if value is not None}
        header = {"kid": signer.kid, "typ": "at+jwt"} | (headers or {})
        header = {name: value for name, value in header.items() if value is not None}
        return jwt.encode(claims, signer.private, algorithm=signer.alg, headers=header)

    async def sign_in(
        self,
        person: Person,
        client: OAuthClientInformationFull,
        scope: str,
        resource: str,
        *,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """A sign-in by `person` through `client` (authorization code with PKCE) asking for `scope`,
        as any client of the provider might make: the provider's token response (with an ID token
        for `openid`)."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "resource": resource,
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
        if "offline_access" in scope.split():
            query["prompt"] = "consent"
        if nonce is not None:
            query["nonce"] = nonce
        code = await person.authorize(f"{self.metadata['authorization_endpoint']}?{urlencode(query)}")
        exchange = {"grant_type": "authorization_code", "code": code.code, "redirect_uri": REDIRECT_URI}
        exchange |= {"code_verifier": verifier, "resource": resource, "client_id": client.client_id or ""}
        if client.client_secret:
            exchange["client_secret"] = client.client_secret
        answer = httpx2.post(self.metadata["token_endpoint"], data=exchange, timeout=10)
        assert answer.status_code == 200, answer.text
        tokens: dict[str, Any] = answer.json()
        return tokens

    def preregistered(self) -> OAuthClientInformationFull:
        """The client an administrator registered (tests/oidc/provider.mjs): public, with PKCE."""
        return OAuthClientInformationFull(
            client_id=PREREGISTERED, redirect_uris=[AnyUrl(REDIRECT_URI)], token_endpoint_auth_method="none"
        )

    def register(self, scope: str) -> OAuthClientInformationFull:
        """A client registered dynamically (RFC 7591) for `scope`, as the SDK registers one."""
        metadata = {
            "client_name": "census-mcp tests",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
            "scope": scope,
        }
        answer = httpx2.post(self.metadata["registration_endpoint"], json=metadata, timeout=10)
        assert answer.status_code == 201, answer.text
        return OAuthClientInformationFull.model_validate(answer.json())

    def requests(self, path: str) -> int:
        """How many requests the provider has had for `path` since it started."""
        counts: dict[str, int] = httpx2.get(f"{self.issuer}/_requests", timeout=10).json()
        return counts.get(path, 0)

    def restart(self, keys: list[ProviderKey]) -> None:
        """Stopped and started again on its port with another key set, as a provider is when a key is
        removed; what it held in memory (clients registered, grants, opaque tokens) is gone."""
        stop(self.process)
        self.process, _ = _start(keys, self.jwks_max_age, self.port)
        self.keys = keys
        self.__dict__.pop("metadata", None)


@contextmanager
def running_identity_provider(
    keys: list[ProviderKey] | None = None, *, jwks_max_age: int | None = None
) -> Iterator[IdentityProvider]:
    keys = keys or [rsa_key()]
    process, issuer = _start(keys, jwks_max_age, 0)
    provider = IdentityProvider(issuer, keys, jwks_max_age, process)
    try:
        yield provider
    finally:
        stop(provider.process)


def _start(keys: list[ProviderKey], jwks_max_age: int | None, port: int) -> tuple[subprocess.Popen[str], str]:
    settings: dict[str, Any] = {"port": port, "keys": [key.jwk(private=True) for key in keys]}
    if jwks_max_age is not None:
        settings["jwksMaxAge"] = jwks_max_age
    process = subprocess.Popen(
        [node_tool("node"), str(PROVIDER), json.dumps(settings)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as ready:
        ready.register(process.stdout, selectors.EVENT_READ)
        if not ready.select(timeout=_STARTS_WITHIN_SECONDS):
            stop(process)
            raise RuntimeError(f"oidc-provider did not start within {_STARTS_WITHIN_SECONDS:.0f} s")
    line = process.stdout.readline()
    if not line:
        stop(process)
        raise RuntimeError(f"oidc-provider exited at start ({process.returncode}): see its stderr above")
    issuer: str = json.loads(line)["issuer"]
    return process, issuer


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class Person:
    """Someone signing in through the provider's dev sign-in and consent pages, followed and filled
    in without a browser; `signed_in` counts the sign-ins, `asked` the scopes each asked for."""

    login: str = "alice@example.com"
    signed_in: int = 0
    asked: list[str] = field(default_factory=list)

    async def authorize(self, url: str) -> AuthorizationCodeResult:
        """Where the authorization URL leads once this person signs in and consents: the code (or
        the error) the provider sends back to the redirect URI."""
        self.asked.append(parse_qs(urlsplit(url).query).get("scope", [""])[0])
        async with httpx2.AsyncClient(follow_redirects=False, timeout=10) as browser:
            answer = await browser.get(url)
            for _ in range(20):
                if answer.is_redirect:
                    url = urljoin(url, answer.headers["location"])
                    if url.startswith(REDIRECT_URI):
                        self.signed_in += 1
                        return _redirected(url)
                    answer = await browser.get(url)
                    continue
                assert answer.status_code == 200, answer.text
                action, prompt = _form(answer.text)
                fields = {"prompt": prompt}
                if prompt == "login":
                    fields |= {"login": self.login, "password": "any password"}
                url = urljoin(url, action)
                answer = await browser.post(url, data=fields)
        raise AssertionError(f"signing in did not come back to {REDIRECT_URI}")


def _form(page: str) -> tuple[str, str]:
    """The action of the dev sign-in (or consent) page's form, and the prompt it answers."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    prompt = re.search(r'name="prompt" value="([^"]+)"', page)
    assert action is not None, page
    assert prompt is not None, page
    return action.group(1), prompt.group(1)


def _redirected(url: str) -> AuthorizationCodeResult:
    query = parse_qs(urlsplit(url).query)
    if "error" in query:
        raise AuthorizationRefused(query["error"][0], query.get("error_description", [""])[0])
    return AuthorizationCodeResult(
        code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
    )


class AuthorizationRefused(Exception):
    """The provider sent the person back with an error instead of a code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error


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


def signing_in(server_url: str, person: Person, storage: MemoryTokens | None = None) -> OAuthClientProvider:
    """The SDK's own OAuth client, from census-mcp's 401 to a token, registering itself (or using
    the client `storage` holds), with `person` at the provider's pages."""
    answered: list[AuthorizationCodeResult] = []

    async def open_browser(url: str) -> None:
        answered.append(await person.authorize(url))

    async def callback() -> AuthorizationCodeResult:
        return answered.pop()

    metadata = OAuthClientMetadata(
        client_name="census-mcp tests",
        redirect_uris=[AnyUrl(REDIRECT_URI)],
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
