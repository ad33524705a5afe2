"""OAuth 2.1 resource-server mode: access tokens from the company's identity provider, checked here.

The MCP authorization spec makes this server a resource server: it names its authorization server
in protected-resource metadata (RFC 9728), and checks each access token it is given. A token that
parses as a JWT is checked against the issuer's published keys (JWKS), which are kept as long as
the issuer says they may be and read again in the background, and at once for a key id not yet
seen (a rotation); any other token is checked by RFC 7662 introspection. Either way the issuer, the
audience (this server's own URL, RFC 8707, or the identity provider's name for it), the expiry
(with a small allowance for clock skew) and the scopes are checked; a token that fails any check is
refused, and nothing about why reaches the caller. A token longer than any identity
provider issues is refused unread, and a JWT's header and payload are measured before they are
decoded: decoding is the cost a forged token would impose.

The JWT checks are PyJWT's (a dependency of the mcp SDK already); only the key cache, the discovery
of the endpoints and the mapping to the SDK's AccessToken are written here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
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
# How long a key set is kept: the Cache-Control max-age its issuer sends, within these bounds, or the
# default without one. A set that cannot be read again is kept KEYS_GRACE_SECONDS longer, tried
# again every KEYS_RETRY_SECONDS at most (sooner for a shorter lifetime), then dropped.
KEYS_DEFAULT_SECONDS = 300.0
KEYS_MIN_SECONDS = 1.0
KEYS_MAX_SECONDS = 3600.0
KEYS_GRACE_SECONDS = 300.0
KEYS_RETRY_SECONDS = 30.0
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
# RFC 9068 section 4: `typ` is at+jwt (or its media type); JWT, or none, is a generic JWT, which
# Entra ID's access tokens are. Compared without regard to case (RFC 7515 section 4.1.9).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
GENERIC_JWT_TYPES = frozenset({"jwt", "application/jwt"})
# Claims only an OpenID Connect ID token carries, which grants no scope: such a token offered as an
# access token is refused, whatever its audience. (Keycloak before 25 copies `nonce` into its access
# tokens, which do carry scopes.)
_ID_TOKEN_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash")
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
    require_at_jwt: bool = False
    """Refuse a JWT whose `typ` is not at+jwt (RFC 9068), generic JWTs included."""

    def __repr__(self) -> str:
        return f"OAuthConfig(issuer={self.issuer!r}, resource={self.resource!r}, audience={self.audience!r})"


async def discover(config: OAuthConfig, http: httpx2.AsyncClient) -> OAuthConfig:
    """The config with its JWKS and introspection endpoints filled in, where they were not given,
    from the issuer's metadata (RFC 8414, then OpenID discovery)."""
    if config.jwks_url and config.introspection_url:
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
        jwks = config.jwks_url or metadata.get("jwks_uri")
        introspection = config.introspection_url or metadata.get("introspection_endpoint")
        if jwks or introspection:
            return dataclasses.replace(config, jwks_url=jwks, introspection_url=introspection)
    if config.jwks_url or config.introspection_url:
        return config  # no metadata to complete them from: the endpoint given is all there is
    raise OAuthSetupError(
        f"Neither {candidates[0]} nor {candidates[1]} names a jwks_uri or an introspection_endpoint: "
        "check --oauth-issuer, or give --oauth-jwks-url or --oauth-introspection-url."
    )


class KeySet:
    """The issuer's signing keys, kept as long as the issuer says they may be and read again in the
    background as that ends, so that a call never waits for them; read at once, a few times a
    minute at most, when a token names a key id not yet seen (a rotation). A key gone from the set
    stops verifying as soon as the new set is read, and `changes` counts the sets read that differ
    from the last, so that verdicts reached with other keys can be forgotten too. A set that cannot
    be read again is kept for a grace period, tried again meanwhile, then dropped; each failure is
    logged."""

    def __init__(
        self, url: str, http: httpx2.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._url = url
        self._http = http
        self._clock = clock
        self._published: list[dict[str, Any]] = []
        self._keys: list[jwt.PyJWK] = []
        self.changes = 0
        # Set by each reading of the set:
        self._lifetime: float
        self._refresh_at: float
        self._usable_until: float
        self._fetches: deque[float] = deque(maxlen=_KEY_FETCHES_PER_MINUTE)
        self._lock = anyio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        found = self._find(kid)
        if found is None:
            # Not read yet, dropped, or a key id not seen before: the issuer may have rotated its keys.
            published = self._published
            async with self._lock:
                if self._published is published and self._may_fetch():
                    self._fetches.append(self._clock())
                    await self._fetch()
            found = self._find(kid)
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((key for key in self._keys if key.key_id == kid), None)

    def _may_fetch(self) -> bool:
        recent = len(self._fetches) == self._fetches.maxlen
        return not recent or self._clock() - self._fetches[0] >= 60.0

    async def _fetch(self) -> None:
        answer = await self._http.get(self._url, timeout=_FETCH_TIMEOUT_SECONDS)
        answer.raise_for_status()
        document = answer.json()
        published = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(published, list) or not all(isinstance(jwk, dict) for jwk in published):
            raise ValueError  # not a JWK set
        if published != self._published:
            self.changes += 1
        self._published, self._keys = published, _usable_keys(published)
        self._lifetime = key_lifetime(answer.headers.get("cache-control"))
        self._refresh_at = self._clock() + self._lifetime
        self._usable_until = self._refresh_at + KEYS_GRACE_SECONDS
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await anyio.sleep(self._refresh_at - self._clock())
            try:
                async with self._lock:
                    await self._fetch()
            except (httpx2.HTTPError, ValueError) as exc:
                self._refresh_at = self._clock() + min(self._lifetime, KEYS_RETRY_SECONDS)
                self._could_not_read(type(exc).__name__)

    def _could_not_read(self, error: str) -> None:
        """Keep the last set while its grace lasts; after that, drop it, once."""
        left = self._usable_until - self._clock()
        if left > 0:
            logger.warning(
                "Could not read the issuer's keys (%s): the last ones are kept %.0f s more.", error, left
            )
        elif self._keys:
            self._published, self._keys = [], []
            self.changes += 1
            logger.warning(
                "Could not read the issuer's keys (%s) past their grace period: JWT access tokens are "
                "refused until they can be read.",
                error,
            )


def key_lifetime(cache_control: str | None) -> float:
    """How long a key set may be kept: its Cache-Control max-age, within KEYS_MIN_SECONDS and
    KEYS_MAX_SECONDS, or KEYS_DEFAULT_SECONDS without one."""
    found = _MAX_AGE.search(cache_control) if cache_control else None
    if found is None:
        return KEYS_DEFAULT_SECONDS
    return min(max(float(found.group(1)), KEYS_MIN_SECONDS), KEYS_MAX_SECONDS)


def _usable_keys(published: list[dict[str, Any]]) -> list[jwt.PyJWK]:
    """The keys of a set that sign and that PyJWT can verify with; others (for encryption, or of an
    unknown type) are left out."""
    usable = []
    for jwk in published:
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            usable.append(jwt.PyJWK(jwk))
        except jwt.PyJWTError:
            continue
    return usable


class JwtVerifier(TokenVerifier):
    """A JWT access token (RFC 9068): an access token by its type, signed by one of the issuer's keys,
    for this server, unexpired."""

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
            if not self._is_access_token_type(header.get("typ", "JWT")):
                logger.info("Refused a JWT whose type is not an access token's")
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
        if is_id_token(claims):
            logger.info("Refused an ID token offered as an access token")
            return None
        return access_token(token, claims, self._config.resource)

    def _is_access_token_type(self, typ: Any) -> bool:
        kind = typ.lower() if isinstance(typ, str) else None
        return kind in ACCESS_TOKEN_TYPES or (kind in GENERIC_JWT_TYPES and not self._config.require_at_jwt)


def is_id_token(claims: Mapping[str, Any]) -> bool:
    """Whether verified claims are an OpenID Connect ID token's: a claim only ID tokens carry, and
    no scope."""
    return any(claim in claims for claim in _ID_TOKEN_CLAIMS) and not scopes_of(claims)


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
    """Another verifier's verdicts, kept for a minute (never past a token's expiry, nor past a change
    `generation` reports, such as a new key set; a refusal, five seconds) and at most
    _CACHED_VERDICTS of them, keyed by a digest of the token: the gate and the SDK both ask about
    each request's token, and a client sends the same one many times. A token over MAX_BEARER_CHARS
    is refused here, unread, whatever checks it."""

    def __init__(
        self,
        inner: TokenVerifier,
        clock: Callable[[], float] = time.time,
        generation: Callable[[], int] = lambda: 0,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._generation = generation
        self._verdicts: OrderedDict[str, tuple[float, int, AccessToken | None]] = OrderedDict()

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_BEARER_CHARS:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        kept = self._verdicts.get(key)
        if kept is not None and kept[0] > now and kept[1] == self._generation():
            self._verdicts.move_to_end(key)
            return kept[2]
        generation = self._generation()
        verdict = await self._inner.verify_token(token)
        until = now + (_VERDICT_SECONDS if verdict is not None else _REFUSAL_SECONDS)
        if verdict is not None and verdict.expires_at is not None:
            until = min(until, verdict.expires_at)
        self._verdicts[key] = (until, generation, verdict)
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > _CACHED_VERDICTS:
            self._verdicts.popitem(last=False)
        return verdict


class TokenKindVerifier(TokenVerifier):
    """A token that parses as a JWT goes to the keys; any other, or a JWT where no keys are known,
    to introspection; a token neither can check is refused."""

    def __init__(self, jwts: TokenVerifier | None, opaque: TokenVerifier | None) -> None:
        self._jwts = jwts
        self._opaque = opaque

    async def verify_token(self, token: str) -> AccessToken | None:
        checker = self._jwts if self._jwts is not None and _is_jwt(token) else self._opaque
        return None if checker is None else await checker.verify_token(token)


def _is_jwt(token: str) -> bool:
    """Whether a token is shaped as a signed JWT: three dot-separated parts of sizes worth decoding,
    the first a JSON header."""
    if not _fits(token):
        return False
    try:
        jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False
    return True


class DiscoveringVerifier(TokenVerifier):
    """Finds the issuer's endpoints on first use (so that a server starts while its identity
    provider is briefly away), then checks each token by its kind: a JWT against the JWKS, any other
    by introspection."""

    def __init__(self, config: OAuthConfig) -> None:
        self._config = config
        self._inner: TokenVerifier | None = None
        self._keys: KeySet | None = None
        self._lock = anyio.Lock()

    def key_set_changes(self) -> int:
        """How many times the issuer's key set has changed: verdicts reached before may not stand."""
        return 0 if self._keys is None else self._keys.changes

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
                self._keys = KeySet(config.jwks_url, http) if config.jwks_url else None
                self._inner = TokenKindVerifier(
                    JwtVerifier(config, self._keys) if self._keys else None,
                    IntrospectionVerifier(config, http) if config.introspection_url else None,
                )
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
    without the read scope, and a write without the write scope. A sign-in (401) and a write
    without the write scope (403) name both scopes: a client that registers itself registers for
    the scopes of its first sign-in, and many providers refuse it any scope beyond them later, so a
    client signed in for reading alone could never step up to write (see the README)."""

    def __init__(self, config: OAuthConfig, write_tools: frozenset[str]) -> None:
        self.config = config
        self.write_tools = write_tools
        discovering = DiscoveringVerifier(config)
        self.verifier = RememberingVerifier(discovering, generation=discovering.key_set_changes)
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
        read, write = self.config.read_scope, self.config.write_scope
        # A 401 asks for both scopes: a client that signed in to read alone would have to step up at
        # its first write, and some providers will not re-consent a dynamically registered client.
        if token is None:
            return Challenge(401, self._challenge(f'scope="{read} {write}"'))
        access = await self.verifier.verify_token(token)
        if access is None:
            refused = 'error="invalid_token"', 'error_description="The token was not accepted."'
            return Challenge(401, self._challenge(*refused, f'scope="{read} {write}"'))
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
