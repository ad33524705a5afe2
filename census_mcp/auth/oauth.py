"""OAuth 2.1 resource-server mode: access tokens from the company's identity provider, checked here.

The MCP authorization spec makes this server a resource server: it names its authorization server
in protected-resource metadata (RFC 9728), and checks each access token it is given. A JWT is
checked against the issuer's published keys (JWKS), fetched once, kept, and fetched again when a
token names a key not yet seen (a rotation), at most once per cooldown. An opaque token is checked
by RFC 7662 introspection. Either way the issuer, the audience (this server's own URL, RFC 8707, or
the identity provider's name for it), the expiry (with a small allowance for clock skew) and the
scopes are checked; a token that fails any check is refused, and nothing about why reaches the
caller. A token longer than any identity provider issues is refused unread, and a JWT's header and
payload are measured before they are decoded: decoding is the cost a forged token would impose.

The JWT checks are PyJWT's (a dependency of the mcp SDK already); only the key cache, the discovery
of the endpoints and the mapping to the SDK's AccessToken are written here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: `none` and the HMAC family (whose key would be public) never verify.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CLOCK_SKEW_SECONDS = 60
# Longer than any access token a provider issues (Entra ID's, with group claims, run to a few KB); a
# longer one is refused before it is hashed or decoded.
MAX_BEARER_CHARS = 16 * 1024
# A JWT header names an algorithm and a key: a few hundred characters, a few KB with a certificate chain.
_MAX_JWT_HEADER_CHARS = 4096
# A key id not seen before sends for the keys again (a rotation), at most this often: a caller
# inventing key ids cannot make this server hammer the identity provider.
_KEY_FETCHES_PER_MINUTE = 6
_FETCH_TIMEOUT_SECONDS = 5.0
_CACHED_VERDICTS = 1024
_VERDICT_SECONDS = 60.0
# A refusal is kept only briefly: it may have come from keys that were being rotated.
_REFUSAL_SECONDS = 5.0


class OAuthSetupError(RuntimeError):
    """The authorization server's metadata or keys could not be read; the message says which."""


@dataclass(frozen=True)
class OAuthConfig:
    issuer: str
    resource: str
    """This server's public /mcp URL, which the protected-resource metadata names (RFC 9728)."""
    audience: str
    """What tokens must carry as `aud`: the resource URL (RFC 8707) or the provider's name for this
    API (Entra ID's application ID)."""
    read_scope: str
    write_scope: str
    jwks_url: str | None = None
    introspection_url: str | None = None
    client_id: str | None = None
    """For introspection: how this server authenticates to the authorization server."""
    client_secret: str | None = None

    def __repr__(self) -> str:
        return f"OAuthConfig(issuer={self.issuer!r}, resource={self.resource!r}, audience={self.audience!r})"


async def discover(config: OAuthConfig, http: httpx2.AsyncClient) -> OAuthConfig:
    """The config with its JWKS and introspection endpoints filled in from the issuer's metadata
    (RFC 8414, then OpenID discovery) where they were not given."""
    if config.jwks_url or config.introspection_url:
        return config
    issuer = config.issuer.rstrip("/")
    parts = urlsplit(issuer)
    candidates = [
        f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}",
        f"{issuer}/.well-known/openid-configuration",
    ]
    for url in candidates:
        try:
            answer = await http.get(url, timeout=_FETCH_TIMEOUT_SECONDS)
        except httpx2.HTTPError:
            continue
        metadata = answer.json() if answer.status_code == 200 else {}
        if not isinstance(metadata, dict):
            continue
        if metadata and str(metadata.get("issuer", "")).rstrip("/") != issuer:
            raise OAuthSetupError(f"The metadata at {url} names another issuer; check --oauth-issuer.")
        jwks, introspection = metadata.get("jwks_uri"), metadata.get("introspection_endpoint")
        if jwks or introspection:
            return OAuthConfig(**{**config.__dict__, "jwks_url": jwks, "introspection_url": introspection})
    raise OAuthSetupError(
        f"Neither {candidates[0]} nor {candidates[1]} names a jwks_uri or an introspection_endpoint: "
        "check --oauth-issuer, or give --oauth-jwks-url or --oauth-introspection-url."
    )


class KeySet:
    """The issuer's signing keys, fetched on first use and again for a key id not yet seen."""

    def __init__(
        self, url: str, http: httpx2.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = url
        self._http = http
        self._clock = clock
        self._keys: jwt.PyJWKSet | None = None
        self._fetches: deque[float] = deque(maxlen=_KEY_FETCHES_PER_MINUTE)
        self._lock = anyio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        seen = self._keys
        found = None if seen is None else _find(seen, kid)
        if found is None:
            # First use, or a key id not seen before: the issuer may have rotated its keys.
            async with self._lock:
                if self._keys is seen and self._may_fetch():
                    await self._fetch()
            found = None if self._keys is None else _find(self._keys, kid)
        return found

    def _may_fetch(self) -> bool:
        recent = len(self._fetches) == self._fetches.maxlen
        return not recent or self._clock() - self._fetches[0] >= 60.0

    async def _fetch(self) -> None:
        self._fetches.append(self._clock())
        answer = await self._http.get(self._url, timeout=_FETCH_TIMEOUT_SECONDS)
        answer.raise_for_status()
        self._keys = jwt.PyJWKSet.from_dict(answer.json())


def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    try:
        return keys[kid]
    except KeyError:
        return None


class JwtVerifier(TokenVerifier):
    """A JWT access token (RFC 9068): signed by one of the issuer's keys, for this server, unexpired."""

    def __init__(self, config: OAuthConfig, keys: KeySet) -> None:
        self._config = config
        self._keys = keys

    async def verify_token(self, token: str) -> AccessToken | None:
        if not _fits(token):
            logger.info("Refused an access token (not three parts of a size a JWT has)")
            return None
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                return None
            key = await self._keys.key(header.get("kid"))
            if key is None:
                return None
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[header["alg"]],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, httpx2.HTTPError, ValueError) as exc:
            logger.info("Refused an access token (%s)", type(exc).__name__)
            return None
        return access_token(token, claims, self._config.resource)


def _fits(token: str) -> bool:
    """Whether a token has a JWT's three parts, its header and payload of sizes worth decoding."""
    parts = token.split(".")
    return len(parts) == 3 and len(parts[0]) <= _MAX_JWT_HEADER_CHARS and len(parts[1]) <= MAX_BEARER_CHARS


class IntrospectionVerifier(TokenVerifier):
    """An opaque token, checked by asking the authorization server (RFC 7662)."""

    def __init__(self, config: OAuthConfig, http: httpx2.AsyncClient) -> None:
        self._config = config
        self._http = http

    async def verify_token(self, token: str) -> AccessToken | None:
        assert self._config.introspection_url is not None
        # RFC 7662 wants the caller authenticated: client_secret_basic, where a client is configured.
        client: dict[str, Any] = {}
        if self._config.client_id and self._config.client_secret:
            client["auth"] = (self._config.client_id, self._config.client_secret)
        try:
            answer = await self._http.post(
                self._config.introspection_url,
                data={"token": token, "token_type_hint": "access_token"},
                timeout=_FETCH_TIMEOUT_SECONDS,
                **client,
            )
            claims = answer.json() if answer.status_code == 200 else {}
        except (httpx2.HTTPError, ValueError) as exc:
            logger.info("Could not introspect an access token (%s)", type(exc).__name__)
            return None
        if not isinstance(claims, dict) or claims.get("active") is not True:
            return None
        now = time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if (
            claims.get("iss") not in (None, self._config.issuer)
            or self._config.audience not in audiences
            or not isinstance(claims.get("exp"), int | float)
            or claims["exp"] + CLOCK_SKEW_SECONDS < now
        ):
            return None
        return access_token(token, claims, self._config.resource)


def access_token(token: str, claims: Mapping[str, Any], resource: str) -> AccessToken:
    """The SDK's AccessToken for verified claims; scopes from `scope` (RFC 9068) and `scp` (Entra, Okta)."""
    client_id = claims.get("client_id") or claims.get("azp") or claims.get("cid") or claims.get("appid") or ""
    return AccessToken(
        token=token,
        client_id=str(client_id),
        scopes=scopes_of(claims),
        # The SDK's own bearer check compares this with its clock: give it the same allowance for skew.
        expires_at=int(claims["exp"]) + CLOCK_SKEW_SECONDS,
        resource=resource,
        subject=str(claims.get("sub", "")),
        claims=dict(claims),
    )


def scopes_of(claims: Mapping[str, Any]) -> list[str]:
    """The scopes a token grants: `scope` and `scp` may each be a space-separated string (RFC 9068,
    Entra ID) or a list (Okta); a token may carry both."""
    scopes: list[str] = []
    for claim in ("scope", "scp"):
        value = claims.get(claim)
        named = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        scopes += [str(scope) for scope in named if str(scope) not in scopes]
    return scopes


class RememberingVerifier(TokenVerifier):
    """Another verifier's verdicts, kept for a minute (never past a token's expiry; a refusal, five
    seconds) and at most
    _CACHED_VERDICTS of them, keyed by a digest of the token: the gate and the SDK both ask about
    each request's token, and a client sends the same one many times. A token over MAX_BEARER_CHARS
    is refused here, unread, whatever checks it."""

    def __init__(self, inner: TokenVerifier, clock: Callable[[], float] = time.time) -> None:
        self._inner = inner
        self._clock = clock
        self._verdicts: OrderedDict[str, tuple[float, AccessToken | None]] = OrderedDict()

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_BEARER_CHARS:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        kept = self._verdicts.get(key)
        if kept is not None and kept[0] > now:
            self._verdicts.move_to_end(key)
            return kept[1]
        verdict = await self._inner.verify_token(token)
        until = now + (_VERDICT_SECONDS if verdict is not None else _REFUSAL_SECONDS)
        if verdict is not None and verdict.expires_at is not None:
            until = min(until, verdict.expires_at)
        self._verdicts[key] = (until, verdict)
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > _CACHED_VERDICTS:
            self._verdicts.popitem(last=False)
        return verdict


class DiscoveringVerifier(TokenVerifier):
    """Finds the issuer's endpoints on first use (so that a server starts while its identity
    provider is briefly away), then checks JWTs against the JWKS, or opaque tokens by introspection
    when only that endpoint is known."""

    def __init__(self, config: OAuthConfig) -> None:
        self._config = config
        self._inner: TokenVerifier | None = None
        self._lock = anyio.Lock()

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            inner = self._inner or await self._discover()
        except (OAuthSetupError, httpx2.HTTPError, ValueError) as exc:
            logger.warning("Cannot check access tokens yet: %s", _reason(exc))
            return None
        return await inner.verify_token(token)

    async def _discover(self) -> TokenVerifier:
        async with self._lock:
            if self._inner is None:
                http = httpx2.AsyncClient(follow_redirects=False)
                config = await discover(self._config, http)
                if config.jwks_url:
                    self._inner = JwtVerifier(config, KeySet(config.jwks_url, http))
                else:
                    self._inner = IntrospectionVerifier(config, http)
            return self._inner


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, OAuthSetupError) else type(exc).__name__


@dataclass(frozen=True)
class RefusedWrite:
    """A write refused at the edge for want of the write scope: who tried what, for the audit trail."""

    access: AccessToken
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Challenge:
    """A refusal at the HTTP edge: its status and WWW-Authenticate header."""

    status: int
    header: str
    refused_write: RefusedWrite | None = None


class ResourceServer:
    """OAuth mode at the HTTP edge: the protected-resource metadata (RFC 9728) that lets clients find
    the authorization server, and the challenges (RFC 6750) for a missing or refused token, a token
    without the read scope, and a write without the write scope, which names both scopes so that a
    client can sign in again with more (step-up)."""

    def __init__(self, config: OAuthConfig, write_tools: frozenset[str]) -> None:
        self.config = config
        self.write_tools = write_tools
        self.verifier = RememberingVerifier(DiscoveringVerifier(config))
        resource = urlsplit(config.resource)
        # RFC 9728 section 3.1: the well-known name goes between the host and the resource's path.
        self.metadata_path = "/.well-known/oauth-protected-resource" + resource.path.rstrip("/")
        self.metadata_url = f"{resource.scheme}://{resource.netloc}{self.metadata_path}"

    def metadata(self) -> dict[str, Any]:
        return {
            "resource": self.config.resource,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": [self.config.read_scope, self.config.write_scope],
            "bearer_methods_supported": ["header"],
            "resource_name": "census-mcp",
        }

    async def admit(self, token: str | None) -> AccessToken | Challenge:
        """The caller's verified token, judged from the headers alone (before any of the body is read),
        or the challenge to refuse it with."""
        read = self.config.read_scope
        # A 401 names the least scope needed: a client signs in to read, and steps up to write only
        # when it writes.
        if token is None:
            return Challenge(401, self._challenge(f'scope="{read}"'))
        access = await self.verifier.verify_token(token)
        if access is None:
            refused = 'error="invalid_token"', 'error_description="The token was not accepted."'
            return Challenge(401, self._challenge(*refused, f'scope="{read}"'))
        if read not in access.scopes:
            return Challenge(403, self._challenge('error="insufficient_scope"', f'scope="{read}"'))
        return access

    def write_refusal(self, access: AccessToken, message: Any) -> Challenge | None:
        """For an admitted caller, once the body is read and parsed: the step-up challenge when the
        message calls a tool that writes and the token lacks the write scope, or None."""
        read, write = self.config.read_scope, self.config.write_scope
        call = _tool_call(message)
        if write in access.scopes or call is None or call[0] not in self.write_tools:
            return None
        header = self._challenge(
            'error="insufficient_scope"',
            f'scope="{read} {write}"',
            f'error_description="This tool changes the workspace: it needs the {write} scope."',
        )
        return Challenge(403, header, RefusedWrite(access, *call))

    def _challenge(self, *parts: str) -> str:
        return "Bearer " + ", ".join([*parts, f'resource_metadata="{self.metadata_url}"'])


def _tool_call(message: Any) -> tuple[str, dict[str, Any]] | None:
    """The tool a JSON-RPC tools/call names and its arguments, or None for any other message. The
    message comes parsed, by the HTTP gate's one bounded parse of the body."""
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(name := params.get("name"), str):
        return None
    arguments = params.get("arguments")
    return name, arguments if isinstance(arguments, dict) else {}
