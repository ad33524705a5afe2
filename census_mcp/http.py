"""The server over streamable HTTP: stateless, so any worker behind a load balancer can answer
any request; behind bearer auth; with a health check for the balancer.

Two auth modes. With a shared token, clients present CENSUS_MCP_AUTH_TOKEN and Census is
called with the server's CENSUS_API_TOKEN. In passthrough, each client presents its own Census
token, which is used for that request alone and only ever sent to the configured Census host.

A request from a hostile caller costs little and leaves no mark: Host and Origin are compared
exactly, a request with two Authorization headers is refused, bodies are bounded, the id, method
and names the SDK repeats in its answers must be short printable text, a client that hangs up is
one quiet log line, and connections that never finish their headers are closed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Sequence
from typing import Any

import pydantic_core
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from census_mcp import __version__
from census_mcp.auth.audit import AuditTrail, oauth_principal
from census_mcp.auth.oauth import OAuthConfig, ResourceServer
from census_mcp.server import build_server
from census_mcp.settings import Settings
from census_mcp.tools import ALL_TOOLS
from census_mcp.tools.base import bearer_token
from census_mcp.untrusted import quote

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
MCP_PATH = "/mcp"
LOCAL_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]")
LOCAL_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
# Longer than any real token; a bound keeps a hostile header from costing anything.
_MAX_TOKEN_CHARS = 4096
_METADATA_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=3600"}
MAX_ERROR_BYTES = 1024
# Commas and colons in one request body, counted before any parsing, in C. Every key needs a colon
# and every item after a container's first a comma, whatever the whitespace, so this bounds what
# parsing can cost. The tools' own bound (500 keys and items, checked once the SDK has parsed the
# body) allows about 1,000; a real call has a few dozen.
MAX_BODY_SEPARATORS = 4000
# The SDK repeats a request's id, method, names and uris in its answers and logs, word for word; the
# gate bounds them (a call's arguments the tools bound, and quote, themselves).
MAX_ID_CHARS = 128
MAX_ENVELOPE_TEXT_CHARS = 1024
_SHORT_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    b'"message":"Invalid request: not a JSON-RPC message this server takes."}}'
)
_ENVELOPE_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request: '
    b'an id, method, name or uri is too long or holds control characters."}}'
)
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")


def create_http_app(settings: Settings) -> ASGIApp:
    """The ASGI app: MCP at /mcp behind bearer auth, and an open health check at /healthz."""
    resource = resource_server(settings) if settings.oauth else None
    server = build_server(settings, token_verifier=resource.verifier if resource else None)
    allowed_hosts = [*LOCAL_HOSTS, *settings.allowed_hosts]
    allowed_origins = [*LOCAL_ORIGINS, *settings.allowed_origins]
    # The SDK's own check stays on behind the exact one in Gate (it matches `host:*` by prefix).
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        transport_security=security,
        max_request_body_size=settings.max_request_bytes,
    )
    return Gate(
        app,
        settings,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
        resource=resource,
        audit=server.audit,
    )


def resource_server(settings: Settings) -> ResourceServer:
    """OAuth mode's checks, for the settings' issuer, audience and scopes."""
    secret = settings.oauth_client_secret
    config = OAuthConfig(
        issuer=settings.oauth_issuer or "",
        resource=settings.resource_url,
        audience=settings.token_audience,
        read_scope=settings.oauth_read_scope,
        write_scope=settings.oauth_write_scope,
        jwks_url=settings.oauth_jwks_url,
        introspection_url=settings.oauth_introspection_url,
        client_id=settings.oauth_client_id,
        client_secret=secret.get_secret_value() if secret else None,
        require_at_jwt=settings.oauth_require_at_jwt,
    )
    return ResourceServer(config, frozenset(tool.name for tool in ALL_TOOLS if not tool.read_only))


class Gate:
    """Answers the health check itself, checks Host and Origin exactly, and lets through only
    requests that carry one right bearer token (any token, in passthrough, where the token is the
    caller's own Census token). A write it refuses for want of the OAuth write scope is audited here,
    as it never reaches the tools."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        *,
        allowed_hosts: Sequence[str] = LOCAL_HOSTS,
        allowed_origins: Sequence[str] = LOCAL_ORIGINS,
        resource: ResourceServer | None = None,
        audit: AuditTrail,
    ) -> None:
        self.app = app
        self.settings = settings
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = allowed_origins
        self.resource = resource
        self.audit = audit
        expected = settings.auth_token.get_secret_value() if settings.auth_token else ""
        self._expected = expected.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == HEALTH_PATH:
            await JSONResponse({"status": "ok", "version": __version__})(scope, receive, send)
            return
        if self.resource is not None and scope["path"] == self.resource.metadata_path:
            # Open to all, as RFC 9728 means it: it is how a client finds where to sign in.
            await JSONResponse(self.resource.metadata(), headers=_METADATA_HEADERS)(scope, receive, send)
            return
        if scope["path"].startswith("/.well-known/"):
            # Nothing else is published there: a client looking for metadata learns it is not here.
            await _error(404, "not_found", "Nothing is published here.")(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            # With a shared token, checked above: only a caller who holds it gets this far.
            async with asyncio.timeout(self.settings.body_timeout_seconds):
                body = await _read_body(scope, receive, self.settings.max_request_bytes)
        except ClientDisconnect:
            # Nothing to answer and nothing wrong with the server: one quiet line, not a traceback.
            logger.info("A client hung up during %s %s", scope["method"], quote(scope["path"], 100))
            return
        except TimeoutError:
            # A body trickled in (slowloris after the headers): answered and closed, not waited on.
            response = _error(
                408, "request_timeout", "The request body did not arrive in time; send it whole."
            )
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        if body is None or body.count(b",") + body.count(b":") > MAX_BODY_SEPARATORS:
            # Refused before the SDK parses it, whose work grows with the keys in it.
            await _error(413, "request_too_large", "The request is larger than any call needs.")(
                scope, receive, send
            )
            return
        if not _envelope_is_plain(body):
            await Response(_ENVELOPE_ERROR, 400, media_type="application/json")(scope, receive, send)
            return
        if self.resource is not None:
            challenge = await self.resource.challenge(bearer_token(_authorization(scope)), body)
            if challenge is not None:
                if (refused := challenge.refused_write) is not None:
                    self.audit.record(
                        principal=oauth_principal(refused.access),
                        tool=refused.tool,
                        arguments=refused.arguments,
                        outcome="refused",
                    )
                status = challenge.status
                error = "invalid_token" if status == 401 else "insufficient_scope"
                description = "Sign in again." if status == 401 else "Your sign-in lacks a scope this needs."
                response = _error(status, error, description)
                response.headers["WWW-Authenticate"] = challenge.header
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), _bounded_errors(send))

    def _refusal(self, scope: Scope) -> ASGIApp | None:
        """The answer to a request that must go no further, or None."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        hosts = [value for name, value in headers if name == b"host"]
        if len(hosts) != 1 or not host_allowed(hosts[0].decode("latin-1"), self.allowed_hosts):
            return _error(421, "invalid_host", "The Host header is not one this server answers to.")
        origins = [value for name, value in headers if name == b"origin"]
        if len(origins) > 1 or (
            origins and not origin_allowed(origins[0].decode("latin-1"), self.allowed_origins)
        ):
            return _error(403, "invalid_origin", "The Origin header is not one this server accepts.")
        if scope["path"] == MCP_PATH and scope["method"] == "GET":
            # A stateless server has nothing to push, so it offers no GET stream (the streamable
            # HTTP spec's 405), rather than an event stream that stays silent forever.
            return JSONResponse(
                {"error": "method_not_allowed", "error_description": "POST MCP messages to /mcp."},
                status_code=405,
                headers={"Allow": "POST"},
            )
        if len([name for name, _ in headers if name == b"authorization"]) > 1:
            # A proxy in front may read the first and this server the last: refuse the ambiguity,
            # without auth too, where the proxy in front may be the one that checks.
            return _error(400, "invalid_request", "Send one Authorization header, not several.")
        if self.settings.no_auth:
            return None
        if self.resource is not None:
            return None  # OAuth: checked once the body shows what is called (a write needs more)
        problem = self._problem(bearer_token(_authorization(scope)))
        return None if problem is None else _unauthorized(problem)

    def _problem(self, token: str | None) -> str | None:
        """Why the presented token is refused, or None when it is accepted."""
        if token is None:
            return "missing"
        if len(token) > _MAX_TOKEN_CHARS:
            return "invalid"
        if self.settings.passthrough:
            return None
        # Constant time, so response timing reveals nothing about the expected token.
        return None if hmac.compare_digest(token.encode(), self._expected) else "invalid"


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Whether a Host header names an allowed host: the same name, and the same port, where the
    pattern gives one (`name:*` takes any port; a bare name, none). Nothing else may follow."""
    given = _HOST.fullmatch(host)
    if given is None:
        return False
    for pattern in allowed:
        wanted = re.fullmatch(r"(?P<name>.+?)(?::(?P<port>[0-9]+|\*))?", pattern)
        if wanted is None or wanted["name"].lower() != given["name"].lower():
            continue
        if wanted["port"] == "*" and given["port"] is not None:
            return True
        if wanted["port"] == given["port"]:
            return True
    return False


def origin_allowed(origin: str, allowed: Sequence[str]) -> bool:
    """Whether an Origin header is an allowed `scheme://host[:port]`: the same scheme, and the rest
    compared as host_allowed does (so nothing may follow the port)."""
    scheme, separator, rest = origin.partition("://")
    if not separator:
        return False
    patterns = (pattern.partition("://") for pattern in allowed)
    return any(wanted == scheme and host_allowed(rest, [host]) for wanted, _, host in patterns)


def _authorization(scope: Scope) -> str:
    """The one Authorization header's value, or ""."""
    value: bytes = dict(scope["headers"]).get(b"authorization", b"")
    return value.decode("latin-1")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, read here so that a client hanging up mid-body is noticed here; None
    when it is (or says it will be) longer than `limit`, without reading more than that."""
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _envelope_is_plain(body: bytes) -> bool:
    """Whether a JSON-RPC message's envelope (all of it but a call's arguments) is short, printable
    text: an id of at most MAX_ID_CHARS (and an integer id within 64 bits), and every other key and
    text at most MAX_ENVELOPE_TEXT_CHARS, without control, bidi or zero-width characters. A body
    that is not a JSON object passes: the SDK refuses it, in words of its own."""
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return True
    if not isinstance(message, dict):
        return True
    request_id = message.get("id")
    if isinstance(request_id, str) and len(request_id) > MAX_ID_CHARS:
        return False
    if isinstance(request_id, int) and not -(2**63) <= request_id < 2**63:
        return False
    params = message.get("params")
    if isinstance(params, dict):
        message["params"] = {key: value for key, value in params.items() if key != "arguments"}
    pending: list[Any] = [message]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value
        elif isinstance(value, str) and (len(value) > MAX_ENVELOPE_TEXT_CHARS or not value.isprintable()):
            return False
    return True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then waits on the client as before."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _bounded_errors(send: Send) -> Send:
    """A send that keeps every error answer small: the SDK's own answers to malformed messages
    repeat, in pydantic's words, parts of what was sent; over MAX_ERROR_BYTES, one short
    JSON-RPC error is sent in their place."""
    held: list[Message] = []

    async def bounded(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held.append(message)
            return
        if held and message["type"] == "http.response.body":
            body = message.get("body", b"")
            if len(body) > MAX_ERROR_BYTES or message.get("more_body", False):
                body = _SHORT_ERROR
            start = held.pop()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send(message)

    return bounded


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _unauthorized(problem: str) -> ASGIApp:
    """401 with the challenge RFC 6750 describes; a missing token gets no error code."""
    challenge = 'Bearer realm="census-mcp"'
    if problem == "missing":
        body = {
            "error": "unauthorized",
            "error_description": "Send your token as `Authorization: Bearer <token>`.",
        }
    else:
        body = {"error": "invalid_token", "error_description": "The bearer token was not accepted."}
        challenge += ', error="invalid_token", error_description="The bearer token was not accepted."'
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": challenge})


class LimitedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers, which uvicorn has
    not: a client that opens connections and trickles headers (slowloris) is cut off.

    Run workers with it: `uvicorn ... --http census_mcp.http:LimitedH11Protocol`.
    """

    header_timeout_seconds = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            # Between requests: the next request's headers are on the clock from its first byte.
            self._arm_header_deadline()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.cycle is None or self.cycle.response_complete:
            logger.info(
                "Closed a connection whose request headers took over %.0f s", self.header_timeout_seconds
            )
            self.transport.close()


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """The HTTP server's own bounds, for uvicorn.Config: header deadline, keep-alive, concurrency,
    and the largest incomplete event (the headers) it buffers."""
    protocol = type(
        "LimitedH11Protocol",
        (LimitedH11Protocol,),
        {"header_timeout_seconds": settings.header_timeout_seconds},
    )
    return {
        "http": protocol,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,
    }
