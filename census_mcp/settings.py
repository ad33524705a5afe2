"""Configuration from flags and environment variables, in one place.

Each setting is declared once in `OPTIONS` with its flag, its environment variable
and its help; the command line and the README's table both come from there. A flag
wins over its environment variable, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import SecretStr

from census_mcp.census.api import API_VERSIONS, V1_RETIREMENT, VersionName, default_version
from census_mcp.census.cache import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES
from census_mcp.census.client import DEFAULT_MAX_CONNECTIONS

SANDBOX_ORIGIN = "http://census-sandbox.invalid"
_API_PATH = re.compile(r"/api/(v\d+)/?$")


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
        "cache_max_mb",
        "--cache-max-mb",
        "CENSUS_MCP_CACHE_MAX_MB",
        "About how many megabytes of parsed lists the cache keeps (estimated from the response bytes).",
        parse=_positive_float,
        default=DEFAULT_MAX_BYTES // 2**20,
    ),
    Option(
        "max_connections",
        "--max-connections",
        "CENSUS_MCP_MAX_CONNECTIONS",
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
        "Comma-separated tool names to offer (default: all).",
        parse=_names,
        default=(),
    ),
    Option(
        "exclude_tools",
        "--exclude-tools",
        "CENSUS_MCP_EXCLUDE_TOOLS",
        "Comma-separated tool names not to offer.",
        parse=_names,
        default=(),
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
        "auth",
        "--auth",
        "CENSUS_MCP_AUTH",
        "HTTP auth: token (clients present CENSUS_MCP_AUTH_TOKEN; Census gets CENSUS_API_TOKEN) or "
        "passthrough (each client presents its own Census token).",
        default="token",
        choices=("token", "passthrough"),
    ),
    Option(
        "auth_token",
        "--auth-token",
        "CENSUS_MCP_AUTH_TOKEN",
        "The bearer token HTTP clients must present, with --auth token.",
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
        "allowed_hosts",
        "--allowed-hosts",
        "CENSUS_MCP_ALLOWED_HOSTS",
        "Comma-separated Host headers to accept besides localhost (DNS-rebinding protection).",
        parse=_names,
        default=(),
    ),
    Option(
        "allowed_origins",
        "--allowed-origins",
        "CENSUS_MCP_ALLOWED_ORIGINS",
        "Comma-separated Origin headers to accept besides localhost.",
        parse=_names,
        default=(),
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
    timeout_seconds: float = 30.0
    page_concurrency: int = 8
    cache_seconds: float = 30.0
    cache_max_entries: int = DEFAULT_MAX_ENTRIES
    cache_max_mb: float = DEFAULT_MAX_BYTES // 2**20
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_result_bytes: int = 24 * 1024
    max_attempts: int = 6
    deadline_seconds: float = 55.0
    read_only: bool = False
    tools: tuple[str, ...] = ()
    exclude_tools: tuple[str, ...] = ()
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = 8000
    auth: Literal["token", "passthrough"] = "token"
    auth_token: SecretStr | None = None
    no_auth: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        if self.sandbox:
            return
        if self.base_url is None and self.region not in API_VERSIONS[self.api_version].hosts:
            raise SettingsError(
                f"API {self.api_version} has no known {self.region.upper()} host: pass --base-url "
                f"(CENSUS_API_BASE_URL) with the {self.api_version} base URL Census gives you."
            )
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

    def warnings(self) -> list[str]:
        """Settings that work but are likely mistakes, one line each, for start-up."""
        found = []
        if self.token is not None and not self.sandbox:
            mismatch = API_VERSIONS[self.api_version].token_mismatch(self.token.get_secret_value())
            if mismatch:
                found.append(f"API {self.api_version}: {mismatch}")
        if self.group_id is not None and not API_VERSIONS[self.api_version].has_groups:
            found.append("CENSUS_GROUP_ID is set, but API v1 has no groups: it is ignored.")
        return found

    @property
    def passthrough(self) -> bool:
        """Each HTTP caller brings its own Census token."""
        return self.transport == "http" and self.auth == "passthrough" and not self.no_auth

    def require_credentials(self, *, serving_http: bool = False) -> None:
        """Fail at start-up, with one line that says what to set, when Census cannot be called
        or the HTTP server would be open to anyone."""
        if serving_http:
            _require_http_auth_of(self)
        if not self.sandbox and self.token is None and not self.passthrough:
            kind = API_VERSIONS[self.api_version].credential_kind
            raise SettingsError(
                f"No Census API token: set CENSUS_API_TOKEN (or pass --token) to a {kind} "
                f"for API {self.api_version}, or pass --sandbox to use the built-in sandbox workspace."
            )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _require_http_auth_of(settings: Settings) -> None:
    if settings.no_auth:
        if settings.host not in LOOPBACK_HOSTS:
            raise SettingsError(
                f"--no-auth is refused on {settings.host}: without auth, serve on 127.0.0.1 only, "
                "or set CENSUS_MCP_AUTH_TOKEN, or use --auth passthrough."
            )
    elif settings.auth == "token" and settings.auth_token is None:
        raise SettingsError(
            "HTTP needs auth: set CENSUS_MCP_AUTH_TOKEN (clients present it as their bearer token), "
            "or pass --auth passthrough (each client presents its own Census token), "
            "or --no-auth on a loopback host."
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare every option as a flag whose help names its environment variable."""
    for option in OPTIONS:
        shown_default = "" if option.default in (None, False) else f" Default: {option.default}."
        help_text = f"{option.help}{shown_default} Env: {option.env}."
        if option.is_switch:
            parser.add_argument(
                option.flag, dest=option.dest, action="store_true", default=None, help=help_text
            )
        else:
            parser.add_argument(
                option.flag, dest=option.dest, default=None, choices=option.choices, help=help_text
            )


def from_arguments(
    namespace: argparse.Namespace, environ: Mapping[str, str] | None = None, *, today: date | None = None
) -> Settings:
    """Settings from parsed flags, falling back to the environment, then to defaults; the API
    version's default depends on `today` (Census retires v1 on 2027-01-15)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(namespace, option.dest, None)
        if given is None:
            raw = environ.get(option.env)
            given = None if raw is None or (raw == "" and not option.is_switch) else raw
        if given is None:
            values[option.dest] = option.default
            continue
        values[option.dest] = _parse(option, given)
    if values["api_version"] is None:
        values["api_version"] = default_version(today or date.today())
    for secret in ("token", "auth_token"):
        if values[secret] is not None:
            values[secret] = SecretStr(values[secret])
    return Settings(**values)


def _parse(option: Option, given: Any) -> Any:
    if not isinstance(given, str):
        return given
    try:
        value = option.parse(given)
    except ValueError as exc:
        raise SettingsError(f"Invalid {option.flag} / {option.env}: {exc}") from None
    if option.choices is not None and value not in option.choices:
        raise SettingsError(
            f"Invalid {option.flag} / {option.env}: choose one of {', '.join(option.choices)}."
        )
    return value
