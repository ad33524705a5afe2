"""The server over streamable HTTP: stateless, so any worker behind a load balancer can answer
any request; behind bearer auth; with a health check for the balancer.

Two auth modes. With a shared token, clients present CENSUS_MCP_AUTH_TOKEN and Census is
called with the server's CENSUS_API_TOKEN. In passthrough, each client presents its own Census
token, which is used for that request alone and only ever sent to the configured Census host.

A request from a hostile caller costs little and leaves no mark: Host and Origin are compared
exactly, a request with two Authorization headers is refused, the token is judged from the headers
before a byte of the body is read (without a good one, 401 and the connection closed), bodies are
bounded each and all together, the id, method and names the SDK repeats in its answers must be
short printable text, a client that hangs up is one quiet log line, and connections that never
finish their headers are closed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
import pydantic_core
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from census_mcp import __version__
from census_mcp.auth.audit import AuditTrail, oauth_principal
from census_mcp.auth.oauth import Challenge, OAuthConfig, ResourceServer
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
# All a token can be checked for in passthrough, before Census sees it: visible ASCII, no spaces
# (RFC 6750's b64token, and Census's `secret-token:...`).
_TOKEN_SHAPE = re.compile(r"[!-~]+")
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
# An integer id must survive a JavaScript client's round trip (Number.MAX_SAFE_INTEGER); a float
# (`1e999` parses as infinity) is no id at all, and the SDK would take the message for a notification.
MAX_SAFE_ID = 2**53 - 1
_SHORT_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,'
    b'"message":"Invalid request: not a JSON-RPC message this server takes."}}'
)
_ENVELOPE_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request: '
    b'an id, method, name or uri is too long or holds control characters."}}'
)
_ID_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request: '
    b'an id must be a string or an integer of at most 2^53-1."}}'
)
# The gate parses a body once, with pydantic_core, whose parser stops at 200 levels with an error
# (never a RecursionError); what it cannot parse is answered here.
_PARSE_ERROR = (
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error: '
    b'the body is not JSON, or is nested deeper than 200 levels."}}'
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
    requests that carry one right bearer token (any token of a token's shape, in passthrough, where
    the token is the caller's own Census token). The token is judged from the headers alone; only
    then is the body read, within its deadline and the process's body budget, and parsed once. A
    write it refuses for want of the OAuth write scope is audited here, as it never reaches the tools."""

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
        self.budget = BodyBudget(settings.body_budget_bytes)
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
        access: AccessToken | None = None
        refusal = self._refusal(scope)
        if refusal is None and self.resource is not None:
            admitted = await self.resource.admit(bearer_token(_authorization(scope)))
            if isinstance(admitted, Challenge):
                refusal = _challenged(admitted)
            else:
                access = admitted
        if refusal is not None:
            # None of the body has been read, and none will be: the connection goes with the answer.
            await _closing(refusal)(scope, receive, send)
            return
        with self.budget.reservation() as reserved:
            try:
                async with asyncio.timeout(self.settings.body_timeout_seconds):
                    body = await _read_body(scope, receive, self.settings.max_request_bytes, reserved)
            except ClientDisconnect:
                # Nothing to answer and nothing wrong with the server: one quiet line, not a traceback.
                logger.info("A client hung up during %s %s", scope["method"], quote(scope["path"], 100))
                return
            except TimeoutError:
                # A body trickled in (slowloris after the headers): answered and closed, not waited on.
                late = "The request body did not arrive in time; send it whole."
                await _closing(_error(408, "request_timeout", late))(scope, receive, send)
                return
            except BodyRefused as refused:
                await _closing(refused.response)(scope, receive, send)
                return
            await self._pass_on(body, access, scope, receive, send)

    async def _pass_on(
        self, body: bytes, access: AccessToken | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A whole body: parsed once, within bounds, its envelope checked, and passed on to the SDK."""
        if body.count(b",") + body.count(b":") > MAX_BODY_SEPARATORS:
            # Refused before anything parses it, as parsing's work grows with the keys in it.
            await _too_large()(scope, receive, send)
            return
        try:
            message = pydantic_core.from_json(body)
        except ValueError:
            await Response(_PARSE_ERROR, 400, media_type="application/json")(scope, receive, send)
            return
        problem = _envelope_problem(message)
        if problem is not None:
            await Response(problem, 400, media_type="application/json")(scope, receive, send)
            return
        if access is not None and self.resource is not None:
            challenge = self.resource.write_refusal(access, message)
            if challenge is not None:
                if (refused := challenge.refused_write) is not None:
                    self.audit.record(
                        principal=oauth_principal(refused.access),
                        tool=refused.tool,
                        arguments=refused.arguments,
                        outcome="refused",
                    )
                await _challenged(challenge)(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), _bounded_errors(send))

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request that must go no further, judged from its headers, or None; OAuth's
        token is judged by the resource server."""
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
        if self.settings.no_auth or self.resource is not None:
            return None
        problem = self._problem(bearer_token(_authorization(scope)))
        return None if problem is None else _unauthorized(problem)

    def _problem(self, token: str | None) -> str | None:
        """Why the presented token is refused, or None when it is accepted."""
        if token is None:
            return "missing"
        if len(token) > _MAX_TOKEN_CHARS:
            return "invalid"
        if self.settings.passthrough:
            return None if _TOKEN_SHAPE.fullmatch(token) else "invalid"
        # Constant time, so response timing reveals nothing about the expected token.
        return None if hmac.compare_digest(token.encode(), self._expected) else "invalid"


class BodyBudget:
    """The bytes of request bodies one process holds at once, shared by all its connections. In
    passthrough mode a token is only checked for its shape before Census sees it, so this, not the
    token, bounds what many callers sending large bodies slowly can make the process hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    @contextmanager
    def reservation(self) -> Iterator[Reservation]:
        """A reservation, empty at first, given back in full when the block ends."""
        reserved = Reservation(self)
        try:
            yield reserved
        finally:
            self.held -= reserved.size


@dataclass
class Reservation:
    """One request's share of the body budget."""

    budget: BodyBudget
    size: int = 0

    def grow_to(self, size: int) -> bool:
        """Whether this request may hold `size` bytes; it then holds them (a share never shrinks)."""
        more = size - self.size
        if more > 0:
            if self.budget.held + more > self.budget.limit:
                return False
            self.budget.held += more
            self.size = size
        return True


class BodyRefused(Exception):
    """A body not read to its end, and the answer that says why."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


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


async def _read_body(scope: Scope, receive: Receive, limit: int, reserved: Reservation) -> bytes:
    """The whole request body, read here so that a client hanging up mid-body is noticed here. A body
    that is (or says it will be) over `limit`, or over what the budget has left, is refused
    (BodyRefused) before more of it is read; a declared length is reserved before any of it is."""
    declared = dict(scope["headers"]).get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:  # h11 has refused lengths of over 20 digits
        raise BodyRefused(_too_large())
    if declared.isdigit() and not reserved.grow_to(int(declared)):
        raise BodyRefused(_over_budget())
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyRefused(_too_large())
        if not reserved.grow_to(size):
            raise BodyRefused(_over_budget())
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large() -> Response:
    return _error(413, "request_too_large", "The request is larger than any call needs.")


def _over_budget() -> Response:
    busy = _error(503, "server_busy", "The server is receiving too many requests at once; try again shortly.")
    busy.headers["Retry-After"] = "1"
    return busy


def _envelope_problem(message: Any) -> bytes | None:
    """The JSON-RPC error for a message whose envelope (all of it but a call's arguments) is not
    short, printable text, or None: an id must be a string of at most MAX_ID_CHARS or an integer of
    at most MAX_SAFE_ID, and every other key and text at most MAX_ENVELOPE_TEXT_CHARS, without
    control, bidi or zero-width characters. A body that is not a JSON object passes: the SDK
    refuses it, in words of its own."""
    if not isinstance(message, dict):
        return None
    if "id" in message:
        request_id = message["id"]
        if isinstance(request_id, str) and len(request_id) > MAX_ID_CHARS:
            return _ENVELOPE_ERROR
        integer = isinstance(request_id, int) and not isinstance(request_id, bool)
        if not isinstance(request_id, str) and not (integer and abs(request_id) <= MAX_SAFE_ID):
            return _ID_ERROR
    envelope = dict(message)
    params = envelope.get("params")
    if isinstance(params, dict):
        envelope["params"] = {key: value for key, value in params.items() if key != "arguments"}
    pending: list[Any] = [envelope]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value
        elif isinstance(value, str) and (len(value) > MAX_ENVELOPE_TEXT_CHARS or not value.isprintable()):
            return _ENVELOPE_ERROR
    return None


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


def _closing(response: Response) -> Response:
    """The response, closing the connection after it: what is left of the body is never read."""
    response.headers["Connection"] = "close"
    return response


def _challenged(challenge: Challenge) -> Response:
    """OAuth's refusal, with its WWW-Authenticate challenge (RFC 6750)."""
    status = challenge.status
    error = "invalid_token" if status == 401 else "insufficient_scope"
    description = "Sign in again." if status == 401 else "Your sign-in lacks a scope this needs."
    response = _error(status, error, description)
    response.headers["WWW-Authenticate"] = challenge.header
    return response


def _unauthorized(problem: str) -> Response:
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


# The largest request head (request line and headers) read, however it arrives.
MAX_HEAD_BYTES = 16 * 1024
# A head ends at its first empty line; h11 takes a bare LF for CRLF, so this does too, to find it.
_HEAD_END = re.compile(rb"\n\r?\n")


class LimitedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, stricter where uvicorn and h11 are lenient:

    - each request's headers have a deadline (uvicorn has none): a client that opens connections
      and trickles headers (slowloris) is cut off;
    - a request's body is not read from the socket before the app asks for it, and a read takes
      no more than a head's worth, so a request the gate refuses from its headers costs at most
      16 KiB of memory for its body, and only until it is answered;
    - a request head over MAX_HEAD_BYTES gets 431 however it arrives (h11 bounds only a head that
      arrives in several reads), and one with a bare LF, a folded line, or both Content-Length and
      Transfer-Encoding gets 400 (RFC 9112 sections 2.2, 5.2 and 6.1 allow refusing each; each is
      how requests are smuggled past a proxy that reads them otherwise). Either way the connection
      is closed.

    Run workers with it: `uvicorn ... --http census_mcp.http:LimitedH11Protocol`.
    """

    header_timeout_seconds = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._strict = StrictConnection(self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES)
        self.conn = self._strict

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if hasattr(transport, "max_size"):
            # asyncio reads 256 KiB at a time: a head and a quarter MB of body, held for a
            # connection before the gate has judged its token, and left to fragment the heap once
            # freed. Reads of a head's size hold 16 KiB, and cost a body that is let in no CPU
            # worth measuring. (uvloop's transport reads its own way.)
            setattr(transport, "max_size", self._strict.max_head_bytes)  # noqa: B010 - not in the stubs
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            # Between requests: the next request's headers are on the clock from its first byte.
            self._arm_header_deadline()
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm_header_deadline()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and not self.transport.is_closing():
            # A new request: nothing more is read until the app asks for its body (uvicorn's
            # receive resumes reading), so that a request refused from its headers is not read.
            self.flow.pause_reading()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 or StrictConnection refused: 400, or 431 for a head
        too long, in a few fixed words (never h11's, which may quote the request), then closed."""
        refusal = self._strict.refusal
        status = refusal.error_status_hint if refusal is not None else 400
        if isinstance(refusal, HeadRefused):
            reason = refusal.reason
        elif status == 431:
            reason = _too_long(self._strict.max_head_bytes)
        else:
            reason = "The request is not valid HTTP/1.1."
        body = json.dumps({"error": "invalid_request", "error_description": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        start = h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase)
        for event in (start, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

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


class HeadRefused(h11.RemoteProtocolError):
    """A request head StrictConnection refuses, with the few words that say why."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason, error_status_hint=status)
        self.reason = reason


class StrictConnection(h11.Connection):
    """h11's server side, which also refuses a head over `max_head_bytes` however it arrived, bare LF
    line ends, folded lines, and a body framed by both Content-Length and Transfer-Encoding. What it
    last refused (h11's own refusals too) is kept, for the answer."""

    def __init__(self, max_head_bytes: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self.max_head_bytes = max_head_bytes
        self.refusal: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            if self.their_state is h11.IDLE:
                # The buffer starts with the next request's head: checked before h11 parses it.
                _check_head(self.trailing_data[0], self.max_head_bytes)
            event = super().next_event()
            if isinstance(event, h11.Request):
                names = {name for name, _ in event.headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    raise HeadRefused("Send Content-Length or Transfer-Encoding, not both.")
            return event
        except h11.RemoteProtocolError as refused:
            self.refusal = refused
            raise


def _check_head(buffered: bytes, limit: int) -> None:
    """Refuses (HeadRefused) a request head, whole or in part, that is too long or not strict HTTP/1.1."""
    head = buffered.lstrip(b"\r\n")  # empty lines before a request line are ignored (RFC 9112 2.2)
    end = _HEAD_END.search(head)
    if end is not None:
        head = head[: end.end()]
    if len(head) > limit:
        raise HeadRefused(_too_long(limit), 431)
    if head.count(b"\n") != head.count(b"\r\n"):
        raise HeadRefused("End every header line with CRLF.")
    if b"\n " in head or b"\n\t" in head:
        raise HeadRefused("Send each header on one line.")


def _too_long(limit: int) -> str:
    return f"The request's headers are over {limit // 1024} KiB."


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """The HTTP server's own bounds, for uvicorn.Config: header deadline, idle keep-alive,
    concurrency, and the largest request head."""
    protocol = type(
        "LimitedH11Protocol",
        (LimitedH11Protocol,),
        {"header_timeout_seconds": settings.header_timeout_seconds},
    )
    return {
        "http": protocol,
        "timeout_keep_alive": settings.idle_timeout_seconds,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }
