"""`census-mcp doctor`: check, one line each, what the server would use, from the settings to Census.

Each line starts with a mark: "ok", "warn" (works, but look at it) or "FAIL" (the server would not
work: the line says what to fix). The exit status is 1 when any line fails. The token's value is
never shown, only its kind. With --json the same lines come as one JSON document.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit

import anyio
from anyio.streams.tls import TLSAttribute

from census_mcp.census.api import API_VERSIONS, WORKSPACE_TOKEN_PREFIX
from census_mcp.census.client import CensusClient
from census_mcp.census.errors import CensusError
from census_mcp.settings import LOOPBACK_HOSTS, Settings, SettingsError, require_http_auth

Mark = Literal["ok", "warn", "FAIL"]
_CLOCK_SKEW_WARN_SECONDS = 60
_NETWORK_TIMEOUT_SECONDS = 5.0


@dataclass
class Report:
    lines: list[tuple[Mark, str]] = field(default_factory=list)

    def add(self, mark: Mark, text: str) -> None:
        self.lines.append((mark, text))

    @property
    def failed(self) -> bool:
        return any(mark == "FAIL" for mark, _ in self.lines)

    def render(self) -> str:
        return "\n".join(f"{mark:<4}  {text}" for mark, text in self.lines)

    @property
    def verdict(self) -> str:
        return "Something would stop the server: fix the FAIL lines." if self.failed else "Ready."

    def as_json(self) -> str:
        checks = [{"mark": mark, "text": text} for mark, text in self.lines]
        return json.dumps({"ok": not self.failed, "verdict": self.verdict, "checks": checks}, indent=2)


def run_doctor(config: Settings, *, as_json: bool = False, today: date | None = None) -> int:
    """Run every check, print the report (lines, or one JSON document), and return the exit status."""
    report = anyio.run(examine, config, today)
    if as_json:
        print(report.as_json())
    else:
        print(report.render())
        print(report.verdict, file=sys.stderr)
    return 1 if report.failed else 0


async def examine(config: Settings, today: date | None = None) -> Report:
    """Every check, in order; v1's retirement is counted from `today`."""
    report = Report()
    api = API_VERSIONS[config.api_version]
    _token_line(config, report)
    report.add("ok", f"API {api.name} at {config.api_base_url}")
    for warning in config.warnings(today):
        report.add("warn", warning)
    if config.sandbox:
        report.add("ok", "network: none needed, the sandbox runs in-process")
    reachable = config.sandbox or await _network_lines(config.api_base_url, api.host_settings, report)
    if reachable and (config.sandbox or config.token is not None):
        await _census_lines(config, report)
    elif reachable and config.passthrough:
        report.add("ok", "Census: not asked: in passthrough each HTTP caller brings the token it asks with")
    elif reachable:
        report.add("FAIL", "Census: not asked, there is no token to ask with; set CENSUS_API_TOKEN")
    _tools_line(config, report)
    if config.transport == "http":
        _http_line(config, report)
    return report


def _http_line(config: Settings, report: Report) -> None:
    """What `--transport http` needs beyond Census: auth that lets only the right callers in."""
    try:
        require_http_auth(config)
    except SettingsError as exc:
        report.add("FAIL", f"HTTP: {exc}")
        return
    auth = {
        "token": "callers presenting the shared CENSUS_MCP_AUTH_TOKEN",
        "passthrough": "callers presenting their own Census token",
        "oauth": f"callers signed in at {config.oauth_issuer}",
    }
    who = "anyone on this machine (--no-auth)" if config.no_auth else auth[config.auth]
    report.add("ok", f"HTTP: would serve http://{config.host}:{config.port}/mcp to {who}")


def _token_line(config: Settings, report: Report) -> None:
    api = API_VERSIONS[config.api_version]
    if config.sandbox:
        report.add("ok", "token: the sandbox's own (--sandbox): no Census account is used")
        return
    if config.token is None:
        where = "each HTTP caller's own, in passthrough" if config.passthrough else None
        if where:
            report.add("ok", f"token: {where}")
        else:
            report.add(
                "FAIL",
                f"token: none; set CENSUS_API_TOKEN (or CENSUS_API_TOKEN_FILE) to a {api.credential_kind}",
            )
        return
    token = config.token.get_secret_value()
    kind = (
        "a workspace API token (secret-token:...)"
        if token.startswith(WORKSPACE_TOKEN_PREFIX)
        else ("not a workspace token: a personal access token, by its shape")
    )
    # A mix-up of kinds is a warning of its own, among the settings' warnings: said once.
    report.add("warn" if api.token_mismatch(token) else "ok", f"token: {kind}, {len(token)} characters")


async def _network_lines(base_url: str, host_settings: str, report: Report) -> bool:
    """DNS, then TLS (or plain HTTP to a loopback host); False when Census cannot be reached."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with anyio.fail_after(_NETWORK_TIMEOUT_SECONDS):
            addresses = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        report.add(
            "FAIL",
            f"DNS: {host} does not resolve ({type(exc).__name__}); check {host_settings} and the network",
        )
        return False
    shown = ", ".join(sorted({str(address[4][0]) for address in addresses})[:3])
    report.add("ok", f"DNS: {host} resolves to {shown}")
    if parts.scheme != "https":
        mark: Mark = "ok" if host in LOOPBACK_HOSTS else "warn"
        report.add(
            mark,
            f"TLS: none, plain HTTP to {host}"
            + ("" if mark == "ok" else ": the token crosses the network unencrypted"),
        )
        return await _reachable(host, port, report)
    try:
        with anyio.fail_after(_NETWORK_TIMEOUT_SECONDS):
            stream = await anyio.connect_tcp(host, port, tls=True, ssl_context=ssl.create_default_context())
        async with stream:
            tls = stream.extra(TLSAttribute.tls_version)  # noqa: S610 - anyio's typed attributes, not Django
            certificate = stream.extra(TLSAttribute.peer_certificate) or {}  # noqa: S610
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        report.add(
            "FAIL",
            f"TLS: no verified connection to {host}:{port} ({type(exc).__name__}); check the host, "
            "a proxy, or the system's CA certificates",
        )
        return False
    expires = certificate.get("notAfter")
    days = ""
    if isinstance(expires, str):
        left = datetime.fromtimestamp(ssl.cert_time_to_seconds(expires), UTC) - datetime.now(UTC)
        days = f", certificate valid {left.days} more days"
    report.add("ok", f"TLS: {tls} to {host}:{port}, certificate verified{days}")
    return True


async def _reachable(host: str, port: int, report: Report) -> bool:
    try:
        with anyio.fail_after(_NETWORK_TIMEOUT_SECONDS):
            stream = await anyio.connect_tcp(host, port)
        await stream.aclose()
    except (OSError, TimeoutError) as exc:
        report.add(
            "FAIL",
            f"connect: {host}:{port} refused or unreachable ({type(exc).__name__}); check the address "
            "and the port",
        )
        return False
    return True


async def _census_lines(config: Settings, report: Report) -> None:
    from census_mcp.server import census_client

    try:
        async with census_client(config) as census:
            probe = await census.probe()
            groups = await _groups(census) if census.api.has_groups else None
    except CensusError as exc:
        report.add("FAIL", f"Census: {exc.message}")
        return
    except SettingsError as exc:
        report.add("FAIL", str(exc))
        return
    report.add("ok", "Census: the token was accepted")
    scope = "in the workspace" if groups is None else "across every group the token can see"
    report.add("ok", f"sources: {probe.sources} {scope}")
    if groups is not None:
        _group_line(config.group_id, groups, report)
    _clock_line(probe.census_date, report)


async def _groups(census: CensusClient) -> set[str]:
    """The groups the token's sources are in (the API lists no groups of its own)."""
    sources = (await census.list_sources()).value.items
    return {source.group_id for source in sources if source.group_id is not None}


def _group_line(group_id: str | None, groups: set[str], report: Report) -> None:
    """Whether create_source's default group is one the token's sources are in (API v2)."""
    found = ", ".join(sorted(groups)) or "none"
    if group_id is None:
        report.add(
            "ok",
            f"group: no default (CENSUS_GROUP_ID): create_source will need group_id; groups found: {found}",
        )
    elif group_id in groups:
        report.add("ok", f"group: CENSUS_GROUP_ID {group_id} is among the groups found ({found})")
    elif not groups:
        report.add("warn", f"group: CENSUS_GROUP_ID {group_id} cannot be checked: the token sees no source")
    else:
        report.add(
            "FAIL",
            f"group: CENSUS_GROUP_ID {group_id} is not a group of any source the token can see; groups "
            f"found: {found}. Set it to one of them (ids are exact), or leave it unset",
        )


def _clock_line(census_date: str | None, report: Report) -> None:
    if census_date is None:
        report.add("warn", "clock: Census sent no Date header to compare with")
        return
    try:
        theirs = parsedate_to_datetime(census_date)
    except (TypeError, ValueError):
        report.add("warn", "clock: Census's Date header is unreadable")
        return
    skew = (datetime.now(UTC) - theirs.astimezone(UTC)).total_seconds()
    mark: Mark = "ok" if abs(skew) <= _CLOCK_SKEW_WARN_SECONDS else "warn"
    advice = "" if mark == "ok" else "; fix the system clock (tokens and TLS depend on it)"
    report.add(mark, f"clock: {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} Census{advice}")


def _tools_line(config: Settings, report: Report) -> None:
    """The tools the model gets, then the sources app and the app-only tools it brings."""
    from census_mcp.app import sources_app
    from census_mcp.tools import select_tools

    try:
        offered = select_tools(config)
    except SettingsError as exc:
        report.add("FAIL", str(exc))
        return
    names = [tool.name for tool in offered if not tool.app_only]
    why = " (--read-only)" if config.read_only else ""
    report.add("ok", f"tools: {len(names)} on{why}: {', '.join(names)}")
    if not config.app:
        report.add("ok", "app: off (--no-app)")
    elif sources_app(offered) is None:
        report.add("ok", "app: off, since list_sources, which it shows, is not offered")
    else:
        app_only = [tool.name for tool in offered if tool.app_only]
        calls = f"; app-only tools: {', '.join(app_only)}" if app_only else ""
        report.add("ok", f"app: on, for hosts that render MCP Apps{calls}")
