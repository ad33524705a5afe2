"""Configuration from flags and environment variables, in one place.

Each setting is declared once in `OPTIONS` with its flag, its environment variable
and its help; the command line and the table in docs/configuration.md both come from there. A flag
wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AnyHttpUrl, SecretStr, TypeAdapter, ValidationError

from census_mcp.census.api import API_VERSIONS, V1_RETIREMENT, VersionName, default_version
from census_mcp.census.cache import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from census_mcp.census.client import DEFAULT_MAX_CONNECTIONS

SANDBOX_ORIGIN = "http://census-sandbox.invalid"
SANDBOX_STATE_OFF = "off"
_API_PATH = re.compile(r"/api/(v\d+)/?$")
SANDBOX_PER_PROCESS = (
    "--sandbox keeps a workspace of its own in each process, so workers or a shared cache "
    "(--cache-url) would mix several: serve one with `python -m census_mcp.sandbox --port 8080` and "
    "give every worker the URL and token it prints (--base-url, --token)."
)


def _user_cache_dir() -> Path:
    """Where this platform keeps a user's caches."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


DEFAULT_SANDBOX_STATE = str(_user_cache_dir() / "census-mcp" / "sandbox.json")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line saying what to set."""


@dataclass(frozen=True)
class Option:
    dest: str
    flag: str
    env: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    is_switch: bool = False
    choices: tuple[str, ...] | None = None
    """Matched without regard to case."""
    file_env: str | None = None
    """Each secret has one: a variable naming a file that holds it (Docker and Kubernetes secrets). Its
    value is kept as a SecretStr, which no repr shows, stripped of the whitespace a paste brings."""
    bearer: bool = False
    """A token that travels as `Authorization: Bearer <token>`: a pasted "Bearer " is dropped, and one
    that no HTTP header could carry is refused at start-up."""
    shown_default: str | None = None
    """The default as --help says it, where the value itself would read oddly (an empty list)."""


def _switch(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {value!r}")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"must be between 0 and 65535, got {number}")
    return number


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {number}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"must be above 0, got {number}")
    return number


OPTIONS: tuple[Option, ...] = (
    Option(
        "token",
        "--token",
        "CENSUS_API_TOKEN",
        "Census API token, sent as a bearer token: a workspace API token (secret-token:...) for API v1, "
        "a personal access token for API v2.",
        file_env="CENSUS_API_TOKEN_FILE",
        bearer=True,
    ),
    Option(
        "api_version",
        "--api-version",
        "CENSUS_API_VERSION",
        f"Census API version: v1 or v2. Default: v1 until {V1_RETIREMENT.isoformat()}, when Census retires "
        "it, v2 from then on.",
        choices=("v1", "v2"),
    ),
    Option(
        "group_id",
        "--group-id",
        "CENSUS_GROUP_ID",
        "API v2: the Fivetran group create_source uses when a call names none.",
    ),
    Option(
        "region",
        "--region",
        "CENSUS_REGION",
        "Census region: us or eu (API v1; API v2 has no known EU host).",
        default="us",
        choices=("us", "eu"),
    ),
    Option(
        "base_url",
        "--base-url",
        "CENSUS_API_BASE_URL",
        "Full API base URL including /api/v1 or /api/v2; overrides --region.",
    ),
    Option(
        "sandbox",
        "--sandbox",
        "CENSUS_MCP_SANDBOX",
        "Serve the built-in simulated workspace instead of Census; no token needed.",
        parse=_switch,
        default=False,
        is_switch=True,
    ),
    Option(
        "sandbox_size",
        "--sandbox-size",
        "CENSUS_MCP_SANDBOX_SIZE",
        "Number of sources seeded in the sandbox.",
        parse=_positive_int,
        default=60,
    ),
    Option(
        "sandbox_state",
        "--sandbox-state",
        "CENSUS_MCP_SANDBOX_STATE",
        "File where the sandbox keeps its workspace between runs, so that what one call creates the next "
        "finds; `census-mcp sandbox-reset` starts it afresh, and 'off' keeps nothing.",
        default=DEFAULT_SANDBOX_STATE,
    ),
    Option(
        "timeout_seconds",
        "--timeout",
        "CENSUS_MCP_TIMEOUT",
        "Seconds to wait for each Census request.",
        parse=_positive_float,
        default=30.0,
    ),
    Option(
        "page_concurrency",
        "--page-concurrency",
        "CENSUS_MCP_PAGE_CONCURRENCY",
        "Pages of a list fetched at once after the first.",
        parse=_positive_int,
        default=8,
    ),
    Option(
        "cache_seconds",
        "--cache-seconds",
        "CENSUS_MCP_CACHE_SECONDS",
        "Seconds a list read from Census is reused for paging and filtering; 0 disables.",
        parse=_non_negative_float,
        default=30.0,
    ),
    Option(
        "cache_max_entries",
        "--cache-max-entries",
        "CENSUS_MCP_CACHE_MAX_ENTRIES",
        "Most lists the cache keeps, over all users and searches; the least recently used go first.",
        parse=_positive_int,
        default=DEFAULT_MAX_ENTRIES,
    ),
    Option(
        "cache_url",
        "--cache-url",
        "CENSUS_MCP_CACHE_URL",
        "redis://HOST:PORT/DB (redis://:PASSWORD@HOST:PORT/DB): the list cache shared by every worker "
        "and host (pip install 'census-mcp[redis]'); without it, each process keeps its own. A secret, "
        "as it may hold Redis's password.",
        file_env="CENSUS_MCP_CACHE_URL_FILE",
    ),
    Option(
        "cache_max_mb",
        "--cache-max-mb",
        "CENSUS_MCP_CACHE_MAX_MB",
        "About how many megabytes of parsed lists the cache keeps (estimated from the response bytes).",
        parse=_positive_float,
        default=DEFAULT_MAX_BYTES // 2**20,
    ),
    Option(
        "census_connections",
        "--census-connections",
        "CENSUS_MCP_CENSUS_CONNECTIONS",
        "Most sockets open to Census at once, shared by every call and user; more requests wait their turn.",
        parse=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
    ),
    Option(
        "max_result_bytes",
        "--max-result-bytes",
        "CENSUS_MCP_MAX_RESULT_BYTES",
        "Cap on any tool result, text plus structured content, in bytes.",
        parse=_positive_int,
        default=24 * 1024,
    ),
    Option(
        "max_attempts",
        "--max-attempts",
        "CENSUS_MCP_MAX_ATTEMPTS",
        "Attempts per Census request that is safe to repeat (429, 5xx, timeouts, dropped connections).",
        parse=_positive_int,
        default=6,
    ),
    Option(
        "deadline_seconds",
        "--deadline",
        "CENSUS_MCP_DEADLINE",
        "Seconds one tool call may take, retries included.",
        parse=_positive_float,
        default=55.0,
    ),
    Option(
        "read_only",
        "--read-only",
        "CENSUS_MCP_READ_ONLY",
        "Offer only the tools that read; the write tools are neither listed nor callable.",
        parse=_switch,
        default=False,
        is_switch=True,
    ),
    Option(
        "tools",
        "--tools",
        "CENSUS_MCP_TOOLS",
        "Comma-separated tool names to offer.",
        parse=_names,
        default=(),
        shown_default="all",
    ),
    Option(
        "exclude_tools",
        "--exclude-tools",
        "CENSUS_MCP_EXCLUDE_TOOLS",
        "Comma-separated tool names not to offer.",
        parse=_names,
        default=(),
        shown_default="none",
    ),
    Option(
        "app",
        "--no-app",
        "CENSUS_MCP_APP",
        "The sources app (MCP Apps), on by default, for hosts that render apps; other clients see the "
        "same tools either way. --no-app or CENSUS_MCP_APP=0 turns it off.",
        parse=_switch,
        default=True,
        is_switch=True,
    ),
    Option(
        "transport",
        "--transport",
        "CENSUS_MCP_TRANSPORT",
        "stdio (what a client launches) or http (streamable HTTP at /mcp, health at /healthz).",
        default="stdio",
        choices=("stdio", "http"),
    ),
    Option(
        "host", "--host", "CENSUS_MCP_HOST", "Address to bind with --transport http.", default="127.0.0.1"
    ),
    Option("port", "--port", "CENSUS_MCP_PORT", "Port with --transport http.", parse=_port, default=8000),
    Option(
        "public_url",
        "--public-url",
        "CENSUS_MCP_PUBLIC_URL",
        "With --transport http: the URL clients reach this server at, behind any proxy "
        "(https://mcp.example.com); with --auth oauth, its /mcp is the resource the protected-resource "
        "metadata names. Default: http://HOST:PORT.",
    ),
    Option(
        "auth",
        "--auth",
        "CENSUS_MCP_AUTH",
        "HTTP auth: token (clients present CENSUS_MCP_AUTH_TOKEN; Census gets CENSUS_API_TOKEN), "
        "passthrough (each client presents its own Census token) or oauth (users sign in through your "
        "identity provider; Census gets CENSUS_API_TOKEN).",
        default="token",
        choices=("token", "passthrough", "oauth"),
    ),
    Option(
        "oauth_issuer",
        "--oauth-issuer",
        "CENSUS_MCP_OAUTH_ISSUER",
        "With --auth oauth: the authorization server's issuer URL, exactly as its tokens name it.",
    ),
    Option(
        "oauth_audience",
        "--oauth-audience",
        "CENSUS_MCP_OAUTH_AUDIENCE",
        "With --auth oauth: the audience (aud) access tokens must carry: a URL, or whatever your identity "
        "provider puts there (Entra ID: the API's application ID, or its api:// URI). "
        "Default: PUBLIC_URL/mcp (RFC 8707).",
    ),
    Option(
        "oauth_read_scope",
        "--oauth-read-scope",
        "CENSUS_MCP_OAUTH_READ_SCOPE",
        "With --auth oauth: the scope the read tools need.",
        default="census:read",
    ),
    Option(
        "oauth_write_scope",
        "--oauth-write-scope",
        "CENSUS_MCP_OAUTH_WRITE_SCOPE",
        "With --auth oauth: the scope create, update, refresh and delete need.",
        default="census:write",
    ),
    Option(
        "oauth_jwks_url",
        "--oauth-jwks-url",
        "CENSUS_MCP_OAUTH_JWKS_URL",
        "With --auth oauth: the issuer's JWKS URL, for JWT access tokens (default: from its metadata).",
    ),
    Option(
        "oauth_introspection_url",
        "--oauth-introspection-url",
        "CENSUS_MCP_OAUTH_INTROSPECTION_URL",
        "With --auth oauth: the RFC 7662 introspection endpoint, for opaque access tokens.",
    ),
    Option(
        "oauth_require_at_jwt",
        "--oauth-require-at-jwt",
        "CENSUS_MCP_OAUTH_REQUIRE_AT_JWT",
        "With --auth oauth: take only JWT access tokens typed at+jwt (RFC 9068), not generic JWTs "
        "(typ JWT or none, as Entra ID sends).",
        parse=_switch,
        default=False,
        is_switch=True,
    ),
    Option(
        "oauth_client_id",
        "--oauth-client-id",
        "CENSUS_MCP_OAUTH_CLIENT_ID",
        "With --oauth-introspection-url: the client this server authenticates as.",
    ),
    Option(
        "oauth_client_secret",
        "--oauth-client-secret",
        "CENSUS_MCP_OAUTH_CLIENT_SECRET",
        "With --oauth-client-id: its secret.",
        file_env="CENSUS_MCP_OAUTH_CLIENT_SECRET_FILE",
    ),
    Option(
        "audit_log",
        "--audit-log",
        "CENSUS_MCP_AUDIT_LOG",
        "File to append the audit trail to, one JSON line per write attempt (default: stderr when "
        "serving; `census-mcp call` keeps none).",
    ),
    Option(
        "audit_reads",
        "--audit-reads",
        "CENSUS_MCP_AUDIT_READS",
        "Record every tool call that reads in the audit trail too, not only the writes.",
        parse=_switch,
        default=False,
        is_switch=True,
    ),
    Option(
        "auth_token",
        "--auth-token",
        "CENSUS_MCP_AUTH_TOKEN",
        "The bearer token HTTP clients must present, with --auth token: at least 32 characters.",
        file_env="CENSUS_MCP_AUTH_TOKEN_FILE",
        bearer=True,
    ),
    Option(
        "no_auth",
        "--no-auth",
        "CENSUS_MCP_NO_AUTH",
        "Serve HTTP without auth; refused unless the host is loopback.",
        parse=_switch,
        default=False,
        is_switch=True,
    ),
    Option(
        "max_request_bytes",
        "--max-request-bytes",
        "CENSUS_MCP_MAX_REQUEST_BYTES",
        "Largest HTTP request body accepted; no census-mcp call needs more than a few hundred KB.",
        parse=_positive_int,
        default=512 * 1024,
    ),
    Option(
        "body_budget_bytes",
        "--body-budget",
        "CENSUS_MCP_BODY_BUDGET",
        "Bytes of request bodies one process holds at once, across all its connections; a request "
        "that would go over gets 503.",
        parse=_positive_int,
        default=32 * 1024 * 1024,
    ),
    Option(
        "header_timeout_seconds",
        "--header-timeout",
        "CENSUS_MCP_HEADER_TIMEOUT",
        "Seconds an HTTP client has to send a request's headers (slow clients are cut off).",
        parse=_positive_float,
        default=5.0,
    ),
    Option(
        "body_timeout_seconds",
        "--body-timeout",
        "CENSUS_MCP_BODY_TIMEOUT",
        "Seconds an HTTP client has to send a request's body once its headers are in (slower get 408).",
        parse=_positive_float,
        default=5.0,
    ),
    Option(
        "idle_timeout_seconds",
        "--idle-timeout",
        "CENSUS_MCP_IDLE_TIMEOUT",
        "Seconds an idle HTTP connection is kept open for its client's next request.",
        parse=_positive_float,
        default=5.0,
    ),
    Option(
        "max_connections",
        "--max-connections",
        "CENSUS_MCP_MAX_CONNECTIONS",
        "HTTP connections served at once per process; more get 503.",
        parse=_positive_int,
        default=1000,
    ),
    Option(
        "allowed_hosts",
        "--allowed-hosts",
        "CENSUS_MCP_ALLOWED_HOSTS",
        "Comma-separated Host headers to accept besides localhost (DNS-rebinding protection).",
        parse=_names,
        default=(),
        shown_default="none",
    ),
    Option(
        "allowed_origins",
        "--allowed-origins",
        "CENSUS_MCP_ALLOWED_ORIGINS",
        "Comma-separated Origin headers to accept besides localhost.",
        parse=_names,
        default=(),
        shown_default="none",
    ),
    Option(
        "log_level",
        "--log-level",
        "CENSUS_MCP_LOG_LEVEL",
        "Log level on stderr.",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
)


@dataclass(frozen=True)
class Settings:
    token: SecretStr | None = None
    api_version: VersionName = "v1"
    group_id: str | None = None
    region: Literal["us", "eu"] = "us"
    base_url: str | None = None
    sandbox: bool = False
    sandbox_size: int = 60
    sandbox_state: str | None = None
    """None or 'off': the sandbox forgets when the process ends (the command line's default keeps it)."""
    timeout_seconds: float = 30.0
    page_concurrency: int = 8
    cache_seconds: float = 30.0
    cache_max_entries: int = DEFAULT_MAX_ENTRIES
    cache_max_mb: float = DEFAULT_MAX_BYTES // 2**20
    cache_url: SecretStr | None = None
    census_connections: int = DEFAULT_MAX_CONNECTIONS
    max_result_bytes: int = 24 * 1024
    max_attempts: int = 6
    deadline_seconds: float = 55.0
    read_only: bool = False
    tools: tuple[str, ...] = ()
    exclude_tools: tuple[str, ...] = ()
    app: bool = True
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    auth: Literal["token", "passthrough", "oauth"] = "token"
    oauth_issuer: str | None = None
    oauth_audience: str | None = None
    oauth_read_scope: str = "census:read"
    oauth_write_scope: str = "census:write"
    oauth_jwks_url: str | None = None
    oauth_introspection_url: str | None = None
    oauth_require_at_jwt: bool = False
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    audit_log: str | None = None
    audit_reads: bool = False
    auth_token: SecretStr | None = None
    no_auth: bool = False
    max_request_bytes: int = 512 * 1024
    body_budget_bytes: int = 32 * 1024 * 1024
    header_timeout_seconds: float = 5.0
    body_timeout_seconds: float = 5.0
    idle_timeout_seconds: float = 5.0
    max_connections: int = 1000
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "WARNING"
    dropped_bearer: tuple[str, ...] = ()
    """The secrets given with a leading "Bearer ", which was dropped: named in a warning."""

    def __post_init__(self) -> None:
        okta = "https://YOUR-ORG.okta.com/oauth2/default"
        for dest, example in (
            ("public_url", "https://mcp.example.com"),
            ("oauth_issuer", okta),
            ("oauth_jwks_url", f"{okta}/v1/keys"),
            ("oauth_introspection_url", f"{okta}/v1/introspect"),
        ):
            url = getattr(self, dest)
            if url is not None and (problem := _url_problem(url)):
                option = next(option for option in OPTIONS if option.dest == dest)
                raise SettingsError(f"{option.flag} ({option.env}) {problem}, e.g. {example}.")
        if self.oauth_client_secret is not None and not self.oauth_client_id:
            raise SettingsError(
                "--oauth-client-secret (CENSUS_MCP_OAUTH_CLIENT_SECRET) is the secret of a client: "
                "name the client with --oauth-client-id (CENSUS_MCP_OAUTH_CLIENT_ID) too."
            )
        if self.sandbox and self.cache_url is not None:
            raise SettingsError(SANDBOX_PER_PROCESS)
        if self.sandbox:
            return
        if self.base_url is None and self.region not in API_VERSIONS[self.api_version].hosts:
            raise SettingsError(
                f"API {self.api_version} has no known {self.region.upper()} host: pass --base-url "
                f"(CENSUS_API_BASE_URL) with the {self.api_version} base URL Census gives you."
            )
        if self.base_url is not None:
            _check_base_url(self.base_url, example=API_VERSIONS[self.api_version].hosts["us"])
        named = _API_PATH.search(self.base_url or "")
        if named and named.group(1) != self.api_version:
            raise SettingsError(
                f"--base-url (CENSUS_API_BASE_URL) ends in /api/{named.group(1)}, but the API version is "
                f"{self.api_version}: make them agree (--api-version / CENSUS_API_VERSION)."
            )

    @property
    def api_base_url(self) -> str:
        """Where Census is: the sandbox, an explicit base URL, or the version's host for the region."""
        if self.sandbox:
            return f"{SANDBOX_ORIGIN}/api/{self.api_version}"
        return (self.base_url or API_VERSIONS[self.api_version].hosts[self.region]).rstrip("/")

    def warnings(self, today: date | None = None) -> list[str]:
        """Settings that work but are likely mistakes or are running out, one line each, for start-up;
        v1's retirement is counted from `today`."""
        found = [
            f'{name} began with "Bearer ", which census-mcp sends itself: it was dropped.'
            for name in self.dropped_bearer
        ]
        notice = (
            None if self.sandbox else API_VERSIONS[self.api_version].retirement_notice(today or date.today())
        )
        if notice:
            found.append(notice)
        if self.token is not None and not self.sandbox:
            mismatch = API_VERSIONS[self.api_version].token_mismatch(self.token.get_secret_value())
            if mismatch:
                found.append(f"API {self.api_version}: {mismatch}")
        if self.group_id is not None and not API_VERSIONS[self.api_version].has_groups:
            found.append("CENSUS_GROUP_ID is set, but API v1 has no groups: it is ignored.")
        host = urlsplit(self.api_base_url).hostname
        if self.api_base_url.startswith("http://") and not self.sandbox and host not in LOOPBACK_HOSTS:
            found.append(
                f"--base-url is plain http:// to {host}: the token would cross the network unencrypted."
            )
        return found

    @property
    def sandbox_state_path(self) -> Path | None:
        """The file the sandbox keeps its workspace in, or None when it keeps nothing."""
        if self.sandbox_state in (None, "", SANDBOX_STATE_OFF):
            return None
        return Path(self.sandbox_state).expanduser()

    @property
    def resource_url(self) -> str:
        """This server's public MCP URL: the resource its OAuth metadata and challenges name."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (self.public_url or f"http://{host}:{self.port}").rstrip("/") + "/mcp"

    @property
    def token_audience(self) -> str:
        """The audience OAuth access tokens must carry: the resource URL (RFC 8707), unless the identity
        provider names this API otherwise (Entra ID's application ID)."""
        return self.oauth_audience or self.resource_url

    @property
    def secrets(self) -> list[str]:
        """Every secret these settings hold, for scrubbing by value from logs and audit lines."""
        held = (self.token, self.auth_token, self.oauth_client_secret, self.cache_url)
        values = [secret.get_secret_value() for secret in held if secret]
        if self.cache_url is not None:
            # Redis's password may be logged on its own (redis-py's errors), and as written or decoded.
            password = _password_in(self.cache_url.get_secret_value())
            values += [password, unquote(password)] if password else []
        return values

    @property
    def oauth(self) -> bool:
        """HTTP callers sign in through the identity provider."""
        return self.transport == "http" and self.auth == "oauth" and not self.no_auth

    @property
    def passthrough(self) -> bool:
        """Each HTTP caller brings its own Census token."""
        return self.transport == "http" and self.auth == "passthrough" and not self.no_auth

    def require_credentials(self, *, serving_http: bool = False) -> None:
        """Fail at start-up, with one line that says what to set, when Census cannot be called
        or the HTTP server would be open to anyone."""
        if serving_http:
            require_http_auth(self)
        if not self.sandbox and self.token is None and not self.passthrough:
            kind = API_VERSIONS[self.api_version].credential_kind
            raise SettingsError(
                f"No Census API token: set CENSUS_API_TOKEN (or pass --token) to a {kind} "
                f"for API {self.api_version}, or pass --sandbox to use the built-in sandbox workspace."
            )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MIN_SHARED_TOKEN = 32


def _check_base_url(url: str, *, example: str) -> None:
    """Refuse, at start-up, a base URL no request could use."""
    problem = _url_problem(url)
    if problem is None and not _API_PATH.search(urlsplit(url).path):
        problem = "must end with the API's path, /api/v1 or /api/v2"
    if problem:
        advice = ": set the token with CENSUS_API_TOKEN" if problem == _CARRIES_CREDENTIALS else ""
        raise SettingsError(f"--base-url (CENSUS_API_BASE_URL) {problem}{advice}, e.g. {example}.")


_CARRIES_CREDENTIALS = "must not carry credentials"
_HTTP_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def _password_in(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _url_problem(url: str) -> str | None:
    """Why an http(s) URL setting is unusable, or None; the URL itself is never echoed, as it may carry
    credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must start with https:// (or http:// for a local server)"
    if not parts.hostname:
        return "has no host"
    if parts.username or parts.password:
        return _CARRIES_CREDENTIALS
    if parts.query or parts.fragment:
        return "must not have a query or a fragment"
    try:
        _HTTP_URL.validate_python(url)
    except ValidationError:
        return "is not a valid URL"
    return None


def require_http_auth(settings: Settings) -> None:
    """Refuse, in one line, an HTTP server that would be open to anyone or could not call Census."""
    if settings.no_auth:
        if settings.host not in LOOPBACK_HOSTS:
            raise SettingsError(
                f"--no-auth is refused on {settings.host}: without auth, serve on 127.0.0.1 only, "
                "or set CENSUS_MCP_AUTH_TOKEN, or use --auth passthrough."
            )
    elif settings.auth == "oauth":
        if not settings.oauth_issuer:
            raise SettingsError(
                "--auth oauth needs the authorization server: set CENSUS_MCP_OAUTH_ISSUER (--oauth-issuer)."
            )
        if settings.token is None and not settings.sandbox:
            raise SettingsError(
                "--auth oauth calls Census with the server's own token: set CENSUS_API_TOKEN "
                "(or CENSUS_API_TOKEN_FILE)."
            )
    elif settings.auth == "token":
        if settings.auth_token is None:
            raise SettingsError(
                "HTTP needs auth: set CENSUS_MCP_AUTH_TOKEN (clients present it as their bearer token), "
                "or pass --auth passthrough (each client presents its own Census token), "
                "or --no-auth on a loopback host."
            )
        if (length := len(settings.auth_token.get_secret_value())) < MIN_SHARED_TOKEN:
            raise SettingsError(
                f"CENSUS_MCP_AUTH_TOKEN is {length} characters, too few to resist guessing: use at least "
                f'{MIN_SHARED_TOKEN}, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))".'
            )


def add_arguments(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """Declare every option as a flag whose help names its environment variable (and file variable);
    a switch's flag turns its default around (--sandbox on, --no-app off).

    `after_command`: the options as a subcommand's parser takes them. One not given stays out of the
    namespace, so that it never overwrites one given before the command, and out of the command's
    --help, which lists only the command's own (`census-mcp --help` lists these).
    """
    for option in OPTIONS:
        quiet = option.default is None or option.is_switch
        default_text = option.shown_default or option.default
        shown_default = "" if quiet else f" Default: {default_text}."
        from_file = f" Or {option.file_env}: a file holding it." if option.file_env else ""
        help_text = (
            argparse.SUPPRESS
            if after_command
            else f"{option.help}{shown_default} Env: {option.env}.{from_file}"
        )
        default = argparse.SUPPRESS if after_command else None
        if option.is_switch:
            parser.add_argument(
                option.flag,
                dest=option.dest,
                action="store_const",
                const=not option.default,
                default=default,
                help=help_text,
            )
        else:
            metavar = "{" + ",".join(option.choices) + "}" if option.choices else None
            parser.add_argument(
                option.flag, dest=option.dest, default=default, metavar=metavar, help=help_text
            )


def given_flags(namespace: argparse.Namespace) -> list[str]:
    """The options given on a command line, as they would be typed again, secrets left out: what an
    example call needs to run against the same Census (or the same sandbox)."""
    flags = []
    for option in OPTIONS:
        given = getattr(namespace, option.dest, None)
        if given is None or option.file_env:
            continue
        flags += [option.flag] if option.is_switch else [option.flag, str(given)]
    return flags


def requested_transport(namespace: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """The transport asked for, read on its own: whether to serve stdio even when another setting
    is unusable."""
    environ = os.environ if environ is None else environ
    given = getattr(namespace, "transport", None) or environ.get("CENSUS_MCP_TRANSPORT") or "stdio"
    return str(given).strip().lower()


def from_arguments(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None, *, today: date | None = None
) -> Settings:
    """Settings from parsed flags, falling back to the environment, then to defaults; the API
    version's default depends on `today` (Census retires v1 on 2027-01-15)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    dropped_bearer = []
    for option in OPTIONS:
        given = getattr(namespace, option.dest, None)
        if given is None:
            raw = environ.get(option.env)
            given = None if raw is None or (raw == "" and not option.is_switch) else raw
            if option.file_env and environ.get(option.file_env):
                given = _read_secret_file(option, environ[option.file_env], also_set=given is not None)
        if option.file_env and given is not None:
            given, dropped = _pasted_secret(option, given)
            if dropped:
                dropped_bearer.append(f"{option.env} ({option.flag})")
        if given is None:
            values[option.dest] = option.default
            continue
        values[option.dest] = _parse(option, given)
    if values["api_version"] is None:
        values["api_version"] = default_version(today or date.today())
    for option in OPTIONS:
        if option.file_env and values[option.dest] is not None:
            values[option.dest] = SecretStr(values[option.dest])
    return Settings(**values, dropped_bearer=tuple(dropped_bearer))


_BEARER = "bearer "


def _pasted_secret(option: Option, given: str) -> tuple[str | None, bool]:
    """A secret as it was meant, from one as it was pasted: without the spaces and line breaks around
    it and, for a bearer token, without a leading "Bearer " (whether that was dropped is returned too).
    A token no HTTP header could carry is refused here, at start-up, rather than on every request."""
    secret = given.strip()
    dropped = option.bearer and secret[: len(_BEARER)].lower() == _BEARER
    if dropped:
        secret = secret[len(_BEARER) :].strip()
    if option.bearer and (problem := _header_problem(secret)):
        raise SettingsError(
            f"{option.env} ({option.flag}) cannot be sent in an HTTP header: {problem}; "
            "set it to the token alone, exactly as it was issued."
        )
    return secret or None, dropped


def _header_problem(token: str) -> str | None:
    """Why a token cannot be a bearer token in a header, naming the place, never the characters."""
    for position, char in enumerate(token, start=1):
        if char in " \t":
            return f"character {position} is a space inside it"
        if char in "\r\n":
            return f"character {position} is a line break inside it"
        if not char.isascii():
            return f"character {position} is not ASCII"
        if not char.isprintable():
            return f"character {position} is a control character"
    return None


def _read_secret_file(option: Option, path: str, *, also_set: bool) -> str:
    """A secret from the file a *_FILE variable names, read once (the caller strips it)."""
    if also_set:
        raise SettingsError(f"Set {option.env} or {option.file_env}, not both.")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{option.file_env} names a file that cannot be read ({type(exc).__name__})."
        ) from None
    if not text.strip():
        raise SettingsError(f"{option.file_env} names an empty file.")
    return text


def _parse(option: Option, given: Any) -> Any:
    if not isinstance(given, str):
        return given
    try:
        value = option.parse(given)
    except ValueError as exc:
        raise SettingsError(f"Invalid {option.flag} / {option.env}: {exc}") from None
    if option.choices is not None:
        matching = [choice for choice in option.choices if choice.casefold() == str(value).casefold()]
        if not matching:
            raise SettingsError(
                f"Invalid {option.flag} / {option.env}: choose one of {', '.join(option.choices)}."
            )
        value = matching[0]
    return value
