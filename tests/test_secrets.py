"""Secrets never leak: not the API token, not the credentials a caller passes in, not the ones Census holds.

Each secret here is a canary with a random part, so a leak anywhere (a result, an error, a
repr, a DEBUG log line of the server, the SDK or httpx2) is found by plain search.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from census_mcp.census.client import CensusClient
from census_mcp.census.errors import (
    CensusAuthError,
    CensusError,
    CensusForbiddenError,
    CensusNotFoundError,
    CensusRequestError,
    CensusUnavailableError,
    CensusUnknownOutcomeError,
)
from census_mcp.census.retry import RetryPolicy
from census_mcp.redaction import MASK, RedactingFilter
from census_mcp.sandbox.seed import SECRET_MARKER
from census_mcp.server import CensusMCPServer, build_server
from census_mcp.settings import Settings
from tests.conftest import Sandbox, running_sandbox, serve_on_loopback
from tests.helpers import call_error, call_ok, everything_shown, no_wait, server_logging
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio


def _canary(kind: str) -> str:
    return f"canary-{kind}-{secrets.token_hex(8)}"


TOKEN_CANARY = _canary("token")
TOKEN = f"secret-token:{TOKEN_CANARY}"
# API v2 takes a personal access token: a secret like the workspace token, with the same canary.
TOKENS = {"v1": TOKEN, "v2": f"pat-{TOKEN_CANARY}"}
PASSWORD = _canary("pw")
UPDATED_PASSWORD = _canary("pw")
REJECTED_PASSWORD = _canary("pw")
KEY_CANARY = _canary("key")
PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_CANARY}\n-----END PRIVATE KEY-----\n"
# What must never be shown: each canary (the token's also without its prefix) and the sandbox's secrets.
NEVER_SHOWN = (TOKEN_CANARY, PASSWORD, UPDATED_PASSWORD, REJECTED_PASSWORD, KEY_CANARY, SECRET_MARKER)

WITHOUT_DATABASE = {"hostname": "db.canary.example.com", "port": 5432, "user": "census"}
POSTGRES = {**WITHOUT_DATABASE, "database": "analytics"}
# Census answers 422 to this: the database is missing.
REJECTED_CREATE = {"type": "postgres", "credentials": {**WITHOUT_DATABASE, "password": REJECTED_PASSWORD}}
SNOWFLAKE = {"account": "xy12345.us-east-1", "user": "CENSUS", "warehouse": "COMPUTE_WH", "use_keypair": True}


def assert_no_secret(text: str, where: str) -> None:
    for secret in NEVER_SHOWN:
        assert secret not in text, f"{where} shows {secret}"


FAST_RETRY = RetryPolicy(max_attempts=2, sleep=no_wait)


# ------------------------------------------------------------------ 1. over stdio, at DEBUG


async def _every_secret_bearing_call(client: Client, sandbox: Sandbox) -> list[str]:
    """Create, update, fail to create, read every source holding secrets, list: all the model sees."""
    holding_secrets = [
        source_id
        for source_id, source in sandbox.workspace.sources.items()
        if SECRET_MARKER in json.dumps(source["connection_details"])
    ]
    assert holding_secrets, "the sandbox should seed sources with secrets"
    created = await call_ok(
        client, "create_source", {"type": "postgres", "credentials": {**POSTGRES, "password": PASSWORD}}
    )
    assert created.structured_content is not None
    postgres_id = created.structured_content["id"]
    keypair = {**SNOWFLAKE, "private_key_pkcs8": PRIVATE_KEY}
    created_keypair = await call_ok(client, "create_source", {"type": "snowflake", "credentials": keypair})
    assert created_keypair.structured_content is not None
    snowflake_id = created_keypair.structured_content["id"]
    update = {"source_id": postgres_id, "credentials": {"password": UPDATED_PASSWORD}}
    results = [created, created_keypair, await call_ok(client, "update_source", update)]
    shown = [await call_error(client, "create_source", REJECTED_CREATE)]
    assert "Missing required credential: database" in shown[0]
    for source_id in [*holding_secrets, postgres_id, snowflake_id]:
        results.append(await call_ok(client, "get_source", {"source_id": source_id}))
    results.append(await call_ok(client, "list_sources", {"limit": 100}))
    # The secrets did reach Census, so they were there to leak.
    stored = sandbox.workspace.sources
    assert stored[postgres_id]["connection_details"]["password"] == UPDATED_PASSWORD
    assert stored[snowflake_id]["connection_details"]["private_key_pkcs8"] == PRIVATE_KEY
    return shown + [everything_shown(result) for result in results]


@asynccontextmanager
async def served_over_stdio(
    base_url: str, stderr_path: Path, *, api_version: str = "v1", group_id: str | None = None
) -> AsyncIterator[Client]:
    """The real console script at DEBUG, for this Census, its stderr (every log line) in a file."""
    params = StdioServerParameters(
        command=_console_script(),
        args=["--log-level", "DEBUG"],
        env=_environment(
            CENSUS_API_TOKEN=TOKENS[api_version],
            CENSUS_API_VERSION=api_version,
            CENSUS_API_BASE_URL=base_url,
            CENSUS_GROUP_ID=group_id or "",
        ),
    )
    with stderr_path.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


async def test_no_secret_in_any_result_nor_in_debug_logs_over_stdio(api_version: str, tmp_path: Path) -> None:
    """Every result a model sees, and everything the server, the SDK and httpx2 log at DEBUG."""
    stderr_path = tmp_path / "stderr.log"
    with running_sandbox(api_version, tokens=(TOKENS[api_version],)) as sandbox:
        served = served_over_stdio(
            sandbox.base_url, stderr_path, api_version=api_version, group_id=sandbox.group_id
        )
        async with served as client:
            shown = await _every_secret_bearing_call(client, sandbox)
    for number, text in enumerate(shown):
        assert_no_secret(text, f"result {number}")
    logged = stderr_path.read_text()
    assert " DEBUG " in logged, f"no DEBUG logging happened: {logged[:500]!r}"
    assert "HTTP Request: POST" in logged, "the calls to Census were not logged"
    assert_no_secret(logged, "the server's stderr")


# ------------------------------------------------------------------ 2. the token on the wire, not in errors


@dataclass
class EchoingCensus:
    """A fake Census that records each Authorization header and answers `status` with a message
    that echoes that header and the request body back, as a careless API or proxy might."""

    status: int = 500
    authorizations: list[str] = field(default_factory=list)

    async def respond(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        self.authorizations.append(authorization)
        body = (await request.body()).decode()
        message = f"Refused Authorization: {authorization} for body {body}"
        # httpcore2 logs response headers at DEBUG: only the log filter stands between this and stderr.
        headers = {"x-echo-authorization": authorization}
        return JSONResponse({"status": "error", "message": message}, status_code=self.status, headers=headers)


@pytest.fixture
def echoing() -> Iterator[tuple[EchoingCensus, str]]:
    fake = EchoingCensus()
    methods = ["GET", "POST", "PATCH", "DELETE"]
    with serve_on_loopback(Starlette(routes=[Route("/{path:path}", fake.respond, methods=methods)])) as root:
        yield fake, f"{root}/api/v1"


def _server(base_url: str) -> CensusMCPServer:
    return build_server(Settings(token=SecretStr(TOKEN), base_url=base_url), retry=FAST_RETRY)


@pytest.mark.parametrize(
    ("status", "tool", "arguments", "shows_census_message"),
    [
        (401, "get_source", {"source_id": 42}, False),
        (403, "get_source", {"source_id": 42}, True),
        (404, "get_source", {"source_id": 42}, False),
        (500, "get_source", {"source_id": 42}, True),
        (422, "create_source", {"type": "postgres", "credentials": {**POSTGRES, "password": PASSWORD}}, True),
        (500, "update_source", {"source_id": 42, "credentials": {"password": UPDATED_PASSWORD}}, True),
    ],
)
async def test_the_token_is_sent_as_given_yet_never_shown_in_errors(
    echoing: tuple[EchoingCensus, str],
    status: int,
    tool: str,
    arguments: dict[str, Any],
    shows_census_message: bool,
) -> None:
    """Census (or a proxy) may echo the request; the error shows what it said, with the secrets cut."""
    fake, base_url = echoing
    fake.status = status
    async with Client(_server(base_url)) as client:
        text = await call_error(client, tool, arguments)
    assert fake.authorizations, "the call never reached the fake Census"
    assert set(fake.authorizations) == {f"Bearer {TOKEN}"}
    assert_no_secret(text, f"the {status} error")
    if shows_census_message:
        assert f"Refused Authorization: Bearer {MASK}" in text


@pytest.mark.parametrize(
    "numeric_secret",
    [secrets.randbelow(10**12) + 10**11, (secrets.randbelow(10**9) + 10**8) / 1000],
    ids=["integer", "float"],
)
async def test_a_numeric_secret_that_census_echoes_back_is_scrubbed(
    echoing: tuple[EchoingCensus, str], numeric_secret: float
) -> None:
    """A PIN-like password or passphrase passed as a JSON number is as secret as a string one."""
    fake, base_url = echoing
    fake.status = 422
    credentials = {**POSTGRES, "password": numeric_secret, "nested": {"ssh_passphrase": numeric_secret}}
    async with Client(_server(base_url)) as client:
        text = await call_error(client, "create_source", {"type": "postgres", "credentials": credentials})
    assert "Refused Authorization" in text, "the fake's echo should be shown, with the secret cut"
    assert str(numeric_secret) not in text
    assert MASK in text


async def test_a_connection_failure_does_not_show_the_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with Client(_server(f"http://127.0.0.1:{port}/api/v1")) as client:
        text = await call_error(client, "list_sources")
    assert "Could not reach Census" in text
    assert_no_secret(text, "the connection error")


async def test_census_answers_echoing_the_token_are_scrubbed_from_debug_logs(
    echoing: tuple[EchoingCensus, str], tmp_path: Path
) -> None:
    """At DEBUG, httpcore2 logs each answer's headers; one that echoes the token is cut by the filter."""
    fake, base_url = echoing
    fake.status = 403
    stderr_path = tmp_path / "stderr.log"
    async with served_over_stdio(base_url, stderr_path) as client:
        text = await call_error(client, "get_source", {"source_id": 42})
    assert_no_secret(text, "the 403 error")
    logged = stderr_path.read_text()
    assert "x-echo-authorization" in logged, "the echoed header should be logged, and masked"
    assert_no_secret(logged, "the server's stderr")


# ------------------------------------------------------------------ 3. reprs and exceptions in-process


def _every_rendering(value: object) -> str:
    """What a log line, a debugger or a crash report would show of a value."""
    shown = [repr(value), str(value)]
    if isinstance(value, BaseException):
        shown.append("".join(traceback.format_exception(value)))
    return "\n".join(shown)


async def _raised(call: Callable[[], Awaitable[object]], kind: type[CensusError]) -> CensusError:
    with pytest.raises(kind) as caught:
        await call()
    return caught.value


async def test_settings_client_and_errors_render_without_secrets(
    api_version: str, echoing: tuple[EchoingCensus, str]
) -> None:
    """repr(), str() and tracebacks are what logs and crash reports hold."""
    settings = Settings(token=SecretStr(TOKEN), base_url="http://127.0.0.1:9/api/v1")
    rendered = {"Settings": _every_rendering(settings)}
    fake, fake_url = echoing
    with running_sandbox(api_version, tokens=(TOKENS[api_version],)) as sandbox:
        async with sandbox.census(retry=FAST_RETRY) as census:
            rendered["CensusClient"] = _every_rendering(census)
            missing = await _raised(lambda: census.get_source(99999), CensusNotFoundError)
            refused = await _raised(
                lambda: census.create_source(REJECTED_CREATE, group_id=sandbox.group_id), CensusRequestError
            )
    rendered["404 from the sandbox"] = _every_rendering(missing)
    rendered["422 from the sandbox"] = _every_rendering(refused)
    assert "Missing required credential: database" in refused.message
    async with CensusClient(fake_url, TOKEN, retry=FAST_RETRY) as census:
        echoed: list[tuple[int, Callable[[], Awaitable[object]], type[CensusError]]] = [
            (401, lambda: census.get_source(42), CensusAuthError),
            (403, lambda: census.get_source(42), CensusForbiddenError),
            (
                404,
                lambda: census.update_source(42, {"credentials": {"password": PASSWORD}}),
                CensusNotFoundError,
            ),
            (422, lambda: census.create_source(REJECTED_CREATE), CensusRequestError),
            (500, lambda: census.create_source(REJECTED_CREATE), CensusUnknownOutcomeError),
            (503, lambda: census.list_sources(), CensusUnavailableError),
        ]
        for status, failing_call, kind in echoed:
            fake.status = status
            error = await _raised(failing_call, kind)
            rendered[f"{status} echoing the request"] = _every_rendering(error)
    assert set(fake.authorizations) == {f"Bearer {TOKEN}"}
    for what, text in rendered.items():
        assert_no_secret(text, what)
    for status in (422, 500):
        assert f"Bearer {MASK}" in rendered[f"{status} echoing the request"], (
            "the echo should be there, masked"
        )


# ------------------------------------------------------------------ 4. the log filter


def _logged(emit: Callable[[logging.Logger], None]) -> str:
    """What a handler with the RedactingFilter (knowing the token) writes for the records `emit` logs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([TOKEN]))
    logger = logging.getLogger(f"tests.secrets.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


UNKNOWN_BEARER = _canary("bearer")


@pytest.mark.parametrize(
    ("message", "args", "kept"),
    [
        ("calling Census with %s", (TOKEN,), "calling Census with"),
        (f"calling Census with {TOKEN}", (), "calling Census with"),
        ("body %s", (json.dumps({"hostname": "db.example.com", "password": PASSWORD}),), '"hostname": "db'),
        ("credentials %r", ({"user": "census", "private_key": PRIVATE_KEY},), "'user': 'census'"),
        ("headers: Authorization: Bearer %s", (TOKEN,), "Authorization: Bearer"),
        ("headers: Authorization: Bearer %s, Accept: */*", (UNKNOWN_BEARER,), "Accept: */*"),
    ],
    ids=["token", "token-in-the-message", "json-pair", "repr-pair", "bearer-token", "bearer-unknown"],
)
def test_the_log_filter_scrubs_each_shape_of_secret(message: str, args: tuple[Any, ...], kept: str) -> None:
    """By value (the token), by key (JSON and repr pairs) and by scheme (any bearer token)."""
    written = _logged(lambda logger: logger.info(message, *args))
    assert_no_secret(written, "the log line")
    assert UNKNOWN_BEARER not in written
    assert kept in written, "the filter should cut the secret, not the line"
    assert MASK in written


def test_the_log_filter_scrubs_tracebacks() -> None:
    """An exception's message is rendered into the log line, so it is scrubbed there too."""

    def crash(logger: logging.Logger) -> None:
        try:
            raise RuntimeError(f"login with password={PASSWORD!r} and token {TOKEN} was refused")
        except RuntimeError:
            logger.exception("Tool crashed")

    written = _logged(crash)
    assert_no_secret(written, "the logged traceback")
    assert "Traceback" in written
    assert "RuntimeError: login with password=" in written
    assert MASK in written


def test_the_servers_logging_scrubs_the_redis_password_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    """The shared cache's URL may hold Redis's password: neither it nor the password alone (as a
    redis error might say it) reaches a log line."""
    password = _canary("redis-pw")
    url = f"redis://:{password}@redis.internal:6379/0"
    with server_logging(Settings(token=SecretStr(TOKEN), cache_url=SecretStr(url), log_level="ERROR")):
        logger = logging.getLogger("tests.secrets.redis")
        logger.error("cannot reach %s", url)
        logger.error("AUTH %s refused", password)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("tests.secrets.redis: cannot reach [redacted]")
    assert lines[1].endswith("tests.secrets.redis: AUTH [redacted] refused")


def test_the_servers_logging_scrubs_both_tokens_by_value(capsys: pytest.CaptureFixture[str]) -> None:
    """Logging as the server sets it up (at --log-level ERROR here): the Census token and the MCP auth
    token clients present are cut out of any line that carries them, even as free text that names
    no key and no scheme."""
    auth_token = _canary("mcp-auth")
    settings = Settings(token=SecretStr(TOKEN), auth_token=SecretStr(auth_token), log_level="ERROR")
    with server_logging(settings):
        logger = logging.getLogger("tests.secrets.configured")
        logger.warning("below the level, so not written")
        logger.error("a client sent %s as a tool name", auth_token)
        logger.error("upstream refused %s", TOKEN)
    lines = capsys.readouterr().err.splitlines()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert len(lines) == 2, lines
    assert re.fullmatch(
        rf"{when} ERROR tests\.secrets\.configured: a client sent \[redacted\] as a tool name", lines[0]
    )
    assert re.fullmatch(rf"{when} ERROR tests\.secrets\.configured: upstream refused \[redacted\]", lines[1])
