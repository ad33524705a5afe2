"""The server over streamable HTTP: stateless, so any worker behind a load balancer can answer
any request; behind bearer auth; with a health check for the balancer.

Two auth modes. With a shared token, clients present CENSUS_MCP_AUTH_TOKEN and Census is
called with the server's CENSUS_API_TOKEN. In passthrough, each client presents its own Census
token, which is used for that request alone and only ever sent to the configured Census host.
"""

from __future__ import annotations

import hmac

from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from census_mcp import __version__
from census_mcp.server import build_server
from census_mcp.settings import Settings
from census_mcp.tools.base import bearer_token

HEALTH_PATH = "/healthz"
MCP_PATH = "/mcp"
_LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
_LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
# Longer than any real token; a bound keeps a hostile header from costing anything.
_MAX_TOKEN_CHARS = 4096


def create_http_app(settings: Settings) -> ASGIApp:
    """The ASGI app: MCP at /mcp behind bearer auth, and an open health check at /healthz."""
    server = build_server(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*_LOCAL_HOSTS, *settings.allowed_hosts],
        allowed_origins=[*_LOCAL_ORIGINS, *settings.allowed_origins],
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, transport_security=security, host=settings.host
    )
    return Gate(app, settings)


class Gate:
    """Answers the health check itself, and lets through only requests that carry the right bearer
    token (any token, in passthrough, where the token is the caller's own Census token)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        expected = settings.auth_token.get_secret_value() if settings.auth_token else ""
        self._expected = expected.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == HEALTH_PATH:
            await JSONResponse({"status": "ok", "version": __version__})(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == MCP_PATH and scope["method"] == "GET":
            # A stateless server has nothing to push, so it offers no GET stream (the streamable
            # HTTP spec's 405), rather than an event stream that stays silent forever.
            body = {"error": "method_not_allowed", "error_description": "POST MCP messages to /mcp."}
            await JSONResponse(body, status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        if scope["type"] != "http" or self.settings.no_auth:
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        problem = self._problem(bearer_token(authorization))
        if problem is None:
            await self.app(scope, receive, send)
            return
        await _unauthorized(problem, scope, receive, send)

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


async def _unauthorized(problem: str, scope: Scope, receive: Receive, send: Send) -> None:
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
    await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": challenge})(scope, receive, send)
