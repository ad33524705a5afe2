"""A simulated Census workspace served as a Starlette app, with all state in memory: the Sources API
at /api/v1 and, from the same data, at /api/v2 (see versions.py for what differs).

It reproduces the documented quirks (mixed error shapes, two create answers, un-enveloped refresh keys,
HTML 404s from a proxy) so that the client and the MCP tools can be tested and benchmarked offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from census_mcp.redaction import mask_secrets
from census_mcp.sandbox.faults import BEFORE_API_FAULTS, NO_FAULTS, FaultConfig, FaultInjector
from census_mcp.sandbox.seed import build_workspace, discovered_tables, iso
from census_mcp.sandbox.source_types import SOURCE_TYPES, credential_problem
from census_mcp.sandbox.versions import (
    GROUPS,
    MISSING_STATUSES,
    RETIRED_STATUSES,
    SANDBOX_PAT,
    SANDBOX_TOKEN,
    V1,
    V2,
    V2_OPERATIONS,
    VERSIONS,
    SandboxVersion,
    missing_body,
    retired_body,
)

logger = logging.getLogger(__name__)
DEFAULT_PER_PAGE, MAX_PER_PAGE = 25, 100
FIRST_REFRESH_KEY = 1647978948
_STATE_FORMAT = 1
# The newest refresh jobs kept; older keys answer not found, as a long-gone job would.
MAX_REFRESH_JOBS = 1000
_LIST_FIELDS = (
    "id",
    "name",
    "label",
    "type",
    "last_test_succeeded",
    "last_tested_at",
    "last_test_results",
    "connection_details",
    "read_only_connection",
    "created_at",
    "sync_engine",
)
_TABLE_COLUMNS = ("table_catalog", "table_schema", "table_name", "last_refreshed_at")
_DEFAULT_TABLE_ORDER = "table_schema:asc,table_name:asc"
_DEFAULT_CATALOGS = {"snowflake": "ANALYTICS", "databricks": "hive_metastore"}
_HTML_404 = "<html><body><h1>404 Not Found</h1></body></html>"
_JSON_TYPE_NAMES: dict[type, str] = {str: "string", bool: "boolean", dict: "JSON object"}
_FORBIDDEN_MESSAGE = "This API token does not have access to this workspace."

Source = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; the defaults give a small, fast, fully authorized workspace."""

    size: int = 60
    seed: int = 7
    tokens: tuple[str, ...] = (SANDBOX_TOKEN,)
    """Workspace tokens /api/v1 accepts."""
    pats: tuple[str, ...] = (SANDBOX_PAT,)
    """Personal access tokens /api/v2 accepts."""
    forbidden_tokens: tuple[str, ...] = ()
    any_token: bool = False
    """Accept every bearer token but the forbidden ones, in both versions: a soak's thousands of users."""
    latency_seconds: float = 0.0
    refresh_seconds: float = 1.0
    create_returns_full: bool = False
    faults: FaultConfig = NO_FAULTS
    missing_v2: tuple[str, ...] = ()
    """v2 operations (among versions.V2_OPERATIONS) whose routes do not exist, answered missing_status."""
    missing_status: int = 404
    v1_retired: int | None = None
    """When set, every /api/v1 request answers this status, saying v1 is retired (410, 401 or 404)."""
    state_path: Path | None = None
    """A file the workspace is kept in between runs: loaded at start, written after every change."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.missing_v2) - set(V2_OPERATIONS))
        if unknown:
            raise ValueError(f"missing_v2 must be among {', '.join(V2_OPERATIONS)}; got {unknown}")
        if self.missing_status not in MISSING_STATUSES:
            raise ValueError(f"missing_status must be one of {MISSING_STATUSES}")
        if self.v1_retired not in (None, *RETIRED_STATUSES):
            raise ValueError(f"v1_retired must be one of {RETIRED_STATUSES}")


@dataclass(frozen=True)
class RequestRecord:
    """One served request, timed with perf_counter so tests can count requests and check overlap.

    `fault` is the injected fault kind, if any; `reached_api` is False when the request was answered
    before the API ran (a fault in front of it, or a 401/403), so tests can tell which writes happened.
    """

    method: str
    path: str
    query: str
    started: float
    finished: float
    fault: str | None = None
    reached_api: bool = True


@dataclass(frozen=True)
class RefreshJob:
    source_id: int
    started: float
    """Wall-clock seconds, so that a job outlives the process when the workspace is kept in a file."""


@dataclass
class Workspace:
    """The mutable state behind one sandbox app."""

    sources: dict[int, Source]
    next_id: int
    refresh_jobs: dict[int, RefreshJob] = field(default_factory=dict)
    next_refresh_key: int = FIRST_REFRESH_KEY
    requests: list[RequestRecord] = field(default_factory=list)
    faults: FaultConfig = NO_FAULTS
    """Read on every request, so a test may replace it while the sandbox is serving."""
    _injector: FaultInjector | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def seeded(cls, size: int, seed: int, faults: FaultConfig = NO_FAULTS) -> Workspace:
        sources = {source["id"]: source for source in build_workspace(size, seed)}
        return cls(sources=sources, next_id=max(sources, default=0) + 1, faults=faults)

    @classmethod
    def kept_in(cls, path: Path, size: int, seed: int, faults: FaultConfig = NO_FAULTS) -> Workspace:
        """The workspace kept in `path` by an earlier run of the same size and seed, else a fresh one.
        A file this cannot read as a kept workspace is moved aside with a warning, never dropped."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls.seeded(size, seed, faults)
        except OSError as exc:
            logger.warning("The sandbox cannot read %s (%s): it starts afresh.", path, type(exc).__name__)
            return cls.seeded(size, seed, faults)
        try:
            state = json.loads(raw)
            if (state["format"], state["size"], state["seed"]) != (_STATE_FORMAT, size, seed):
                return cls.seeded(size, seed, faults)  # kept for another size: a choice, not damage
            return cls(
                sources={int(key): source for key, source in state["sources"].items()},
                next_id=state["next_id"],
                refresh_jobs={int(key): RefreshJob(*job) for key, job in state["refresh_jobs"].items()},
                next_refresh_key=state["next_refresh_key"],
                faults=faults,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
            try:
                os.replace(path, aside)
            except OSError:
                aside = path
            logger.warning(
                "The sandbox's state file %s is unreadable (%s): kept as %s, and the sandbox starts afresh.",
                path,
                type(exc).__name__,
                aside,
            )
            return cls.seeded(size, seed, faults)

    def keep_in(self, path: Path, size: int, seed: int) -> None:
        """Write the workspace to `path`, whole or not at all (a temporary file, then a rename), readable
        by its owner only, with every credential masked as get_source shows it: a trial's password
        never rests on disk."""
        state = {
            "format": _STATE_FORMAT,
            "size": size,
            "seed": seed,
            "sources": {
                key: source | {"connection_details": mask_secrets(source["connection_details"])}
                for key, source in self.sources.items()
            },
            "next_id": self.next_id,
            "refresh_jobs": {key: [job.source_id, job.started] for key, job in self.refresh_jobs.items()},
            "next_refresh_key": self.next_refresh_key,
        }
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.{os.getpid()}")
        scratch.unlink(missing_ok=True)  # a crash's leftover would keep its own mode
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(state, file)
        os.replace(scratch, path)

    def fault_injector(self) -> FaultInjector:
        """The injector for the current `faults`; replacing `faults` starts its seeded sequence afresh."""
        if self._injector is None or self._injector.config is not self.faults:
            self._injector = FaultInjector(self.faults)
        return self._injector


class ApiError(Exception):
    """A failure answered with the exact status and body Census would send."""

    def __init__(self, status_code: int, body: Mapping[str, Any]) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = dict(body)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status_code)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, {"status": 400, "message": message})


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, {"status": "error", "message": message})


def _render_error(request: Request, exc: Exception) -> Response:
    """Send ApiError bodies as they are; any other 404 gets the HTML page a proxy in front of Census sends."""
    if isinstance(exc, ApiError):
        return exc.response()
    return HTMLResponse(_HTML_404, status_code=404)


class _SandboxMiddleware:
    """Adds the configured latency, injects faults, enforces bearer auth and logs every request.

    Faults that a proxy would answer come before auth; rejected and faulted requests are logged too.
    """

    def __init__(self, app: ASGIApp, workspace: Workspace, config: SandboxConfig) -> None:
        self.app = app
        self.workspace = workspace
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        recorded = reached_api = False
        fault: str | None = None

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                query = scope["query_string"].decode("latin-1")
                entry = RequestRecord(
                    scope["method"], scope["path"], query, started, time.perf_counter(), fault, reached_api
                )
                self.workspace.requests.append(entry)

        async def send_recorded(message: Message) -> None:
            # Logged before the answer leaves, so a client that has its answer always finds it in the log.
            if message["type"] == "http.response.start":
                record()
                # As Census's servers do; served in-process, no web server adds it.
                headers = MutableHeaders(scope=message)
                headers.setdefault("date", formatdate(usegmt=True))
            await send(message)

        try:
            if self.config.latency_seconds > 0:
                await asyncio.sleep(self.config.latency_seconds)
            injector = self.workspace.fault_injector()
            version = _version_of(scope["path"])
            fault = injector.draw(scope["method"]) if version else None
            answer: ASGIApp
            if fault in BEFORE_API_FAULTS:
                answer = injector.response(fault)
            elif version is V1 and self.config.v1_retired:
                status = self.config.v1_retired
                fault, answer = None, ApiError(status, retired_body(status)).response()
            elif denial := self._denial(version, Headers(scope=scope).get("authorization", "")):
                fault, answer = None, denial.response()  # a spoilt answer needs the API to have run
            else:
                reached_api = True
                answer = injector.spoil(fault, self.app) if fault else self.app
            await answer(scope, receive, send_recorded)
            if reached_api and scope["method"] != "GET" and self.config.state_path is not None:
                self.workspace.keep_in(self.config.state_path, self.config.size, self.config.seed)
        finally:
            record()

    def _denial(self, version: SandboxVersion | None, authorization: str) -> ApiError | None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token in self.config.forbidden_tokens:
            return ApiError(403, {"status": "error", "message": _FORBIDDEN_MESSAGE})
        accepted = self.config.pats if version is V2 else self.config.tokens
        if not token or (token not in accepted and not self.config.any_token):
            return ApiError(401, {"status": 401})
        return None


def _version_of(path: str) -> SandboxVersion | None:
    """The API version a path is under, or None outside the API."""
    for version in VERSIONS:
        if path == version.prefix or path.startswith(f"{version.prefix}/"):
            return version
    return None


def _parse_int(raw: str | None) -> int | None:
    """Parse an ASCII integer; anything else (including Unicode digits and spaces) is None."""
    digits = (raw or "").removeprefix("-")
    return int(raw) if raw and digits.isascii() and digits.isdigit() else None


def _int_query(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = _parse_int(raw)
    if value is None:
        raise _bad_request(f"{name} must be an integer")
    return value


def _paginate(
    request: Request,
    items: Sequence[Mapping[str, Any]],
    shape: Callable[[Any], Mapping[str, Any]] = dict,
) -> JSONResponse:
    """The single pagination envelope used by every list endpoint: page 0 counts as 1, per_page is clamped.
    `shape` makes each row of the page as the API shows it (only the page's rows: a big workspace
    would otherwise cost the sandbox, and every benchmark through it, a shaping of every source)."""
    page = max(_int_query(request, "page", 1), 1)
    per_page = min(_int_query(request, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    if per_page < 1:
        raise _bad_request("per_page must be a positive integer")
    total = len(items)
    last_page = max(1, -(-total // per_page))
    next_page = page + 1 if page < last_page else None
    start = (page - 1) * per_page
    next_url = request.url.include_query_params(page=next_page, per_page=per_page) if next_page else None
    return JSONResponse(
        {
            "status": "success",
            "data": [shape(item) for item in items[start : start + per_page]],
            "next": str(next_url) if next_url else None,
            "pagination": {
                "total_records": total,
                "per_page": per_page,
                "prev_page": page - 1 if page > 1 else None,
                "page": page,
                "next_page": next_page,
                "last_page": last_page,
            },
        }
    )


def _table_row(source: Source, qualified_name: str) -> dict[str, Any]:
    schema, _, table = qualified_name.partition(".")
    details = source["connection_details"]
    catalog = (
        details.get("project_id") or details.get("database") or _DEFAULT_CATALOGS.get(source["type"], "main")
    )
    return {
        "table_catalog": catalog,
        "table_schema": schema,
        "table_name": table,
        "last_refreshed_at": source["last_tested_at"] or source["created_at"],
    }


def _table_order(raw: str) -> list[tuple[str, bool]]:
    """Parse order_by such as "table_schema:desc,table_name:asc" into (column, descending) pairs."""
    keys = []
    for part in raw.split(","):
        column, _, direction = part.strip().partition(":")
        if column not in _TABLE_COLUMNS or direction not in ("", "asc", "desc"):
            columns = ", ".join(_TABLE_COLUMNS)
            raise _bad_request(
                f"order_by must look like {_DEFAULT_TABLE_ORDER}, with columns among {columns}"
            )
        keys.append((column, direction == "desc"))
    return keys


async def _body(request: Request) -> dict[str, Any]:
    """A POST/PATCH body's JSON object, or {} when it is not one (the connection check then refuses it)."""
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _connection_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `connection` object of a body, or a 422 like Census gives for a malformed body."""
    connection = body.get("connection")
    if not isinstance(connection, dict):
        raise _unprocessable("The request body must be a JSON object with a connection object.")
    return connection


def _optional(connection: Mapping[str, Any], key: str, expected: type[_T]) -> _T | None:
    """Read an optional connection property, rejecting a wrong type instead of storing it."""
    value = connection.get(key)
    if value is not None and not isinstance(value, expected):
        raise _unprocessable(f"connection.{key} must be a {_JSON_TYPE_NAMES[expected]}")
    return value


class _Endpoints:
    """The route handlers of one API version, bound to one workspace and config."""

    def __init__(self, workspace: Workspace, config: SandboxConfig, version: SandboxVersion) -> None:
        self.workspace = workspace
        self.config = config
        self.version = version

    def routes(self) -> list[Route]:
        return [
            Route("/sources", self.list_sources, methods=["GET"]),
            self._route("create_source", "/sources", self.create_source, "POST"),
            Route("/sources/{source_id}", self.get_source, methods=["GET"]),
            self._route("update_source", "/sources/{source_id}", self.update_source, "PATCH"),
            self._route("delete_source", "/sources/{source_id}", self.delete_source, "DELETE"),
            self._route("refresh_tables", "/sources/{source_id}/refresh_tables", self.refresh_tables, "POST"),
            self._route(
                "refresh_tables_status", "/sources/{source_id}/refresh_tables_status", self.refresh_status
            ),
            self._route("tables", "/sources/{source_id}/tables", self.list_tables),
            self._route("source_types", "/source_types", self.list_source_types),
            self._route("source_types", "/source_types/{service_name}", self.get_source_type),
        ]

    def _route(self, operation: str, path: str, handler: Any, method: str = "GET") -> Route:
        """A route, or, for an operation configured missing on v2, one that answers as a missing route."""
        if self.version is V2 and operation in self.config.missing_v2:
            status = self.config.missing_status

            async def missing(request: Request) -> Response:
                raise ApiError(status, missing_body(status))

            handler = missing
        return Route(path, handler, methods=[method])

    def _not_found(self) -> ApiError:
        return ApiError(404, {"status": self.version.not_found_status})

    def _source(self, request: Request, missing: ApiError | None = None) -> Source:
        """Look up the path's source; a non-integer id gets {"status":404}, an unknown one `missing`."""
        source_id = _parse_int(request.path_params["source_id"])
        if source_id is None:
            raise ApiError(404, {"status": 404})
        source = self.workspace.sources.get(source_id)
        if source is None:
            raise missing or self._not_found()
        return source

    def _list_shape(self, source: Source) -> Source:
        return self.version.shape(source, _LIST_FIELDS)

    def _detail_shape(self, source: Source) -> Source:
        return self._list_shape(source) | {"data_sources": source["data_sources"]}

    async def list_sources(self, request: Request) -> Response:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _bad_request("order must be asc or desc")
        sources = sorted(
            self.workspace.sources.values(), key=itemgetter("created_at", "id"), reverse=order == "desc"
        )
        return _paginate(request, sources, self._list_shape)

    async def get_source(self, request: Request) -> Response:
        return JSONResponse({"status": "success", "data": self._detail_shape(self._source(request))})

    async def create_source(self, request: Request) -> Response:
        body = await _body(request)
        connection = _connection_of(body)
        group = self.version.create_group(connection)
        if group not in GROUPS:
            raise _unprocessable(
                f"{self.version.group_field} is required and must be one of the groups this token can reach: "
                + ", ".join(GROUPS)
            )
        source_type = SOURCE_TYPES.get(str(connection.get("type")))
        if source_type is None:
            raise _unprocessable(f"Unknown source type. Known types: {', '.join(SOURCE_TYPES)}")
        if not source_type["creatable_via_api"]:
            raise _unprocessable(f"{source_type['label']} sources can only be created via a connect link.")
        credentials = _optional(connection, "credentials", dict)
        if credentials is None:
            raise _unprocessable("connection.credentials is required")
        problem = credential_problem(source_type, credentials)
        if problem:
            raise _unprocessable(problem)
        label = _optional(connection, "label", str)
        sync_engine = _optional(connection, "sync_engine", str) or "basic"
        if sync_engine not in source_type["supported_sync_engines"]:
            engines = ", ".join(source_type["supported_sync_engines"])
            raise _unprocessable(f"connection.sync_engine must be one of {engines}")
        identity = credentials.get(source_type["configuration_fields"]["fields"][0]["id"])
        name = _optional(connection, "name", str) or label or f"{source_type['label']} - {identity}"
        if self.version.names_unique_per_group and any(
            other["name"] == name and other["group_id"] == group for other in self.workspace.sources.values()
        ):
            message = f"A source named {name!r} already exists in {group}."
            raise ApiError(409, {"status": 409, "message": message})
        source: Source = {
            "id": self.workspace.next_id,
            "name": name,
            "label": label,
            "type": source_type["service_name"],
            "last_test_succeeded": None,
            "last_tested_at": None,
            "last_test_results": None,
            "connection_details": dict(credentials),
            "read_only_connection": _optional(connection, "read_only_connection", bool) or False,
            "created_at": iso(datetime.now(UTC)),
            "sync_engine": sync_engine,
            "group_id": group,
            "data_sources": [],
        }
        self.workspace.sources[source["id"]] = source
        self.workspace.next_id += 1
        data = self._detail_shape(source) if self.config.create_returns_full else {"id": source["id"]}
        return JSONResponse({"status": "created", "data": data}, status_code=201)

    async def update_source(self, request: Request) -> Response:
        source = self._source(request)
        connection = _connection_of(await _body(request))
        credentials = _optional(connection, "credentials", dict) or {}
        label = _optional(connection, "label", str)
        name = _optional(connection, "name", str)
        read_only = _optional(connection, "read_only_connection", bool)
        if not credentials and label is None and name is None and read_only is None:
            raise _unprocessable("Nothing to update: give credentials, label, name or read_only_connection.")
        source["connection_details"] |= credentials
        if label is not None:
            source["label"] = source["name"] = label
        if name is not None:
            source["name"] = name
        if read_only is not None:
            source["read_only_connection"] = read_only
        return JSONResponse({"status": "updated", "data": self._detail_shape(source)})

    async def delete_source(self, request: Request) -> Response:
        source = self._source(request, missing=ApiError(404, {"status": 404}))
        del self.workspace.sources[source["id"]]
        return JSONResponse({"status": "deleted"})

    async def refresh_tables(self, request: Request) -> Response:
        source = self._source(request)
        key = self.workspace.next_refresh_key
        self.workspace.next_refresh_key += 1
        jobs = self.workspace.refresh_jobs
        jobs[key] = RefreshJob(source["id"], time.time())
        if len(jobs) > MAX_REFRESH_JOBS:
            del jobs[next(iter(jobs))]  # the oldest: keys grow, and a dict keeps their order
        return JSONResponse({"refresh_key": key})

    async def refresh_status(self, request: Request) -> Response:
        key = _parse_int(request.query_params.get("refresh_key"))
        if key is None:
            raise _bad_request("refresh_key is required")
        source = self._source(request)
        job = self.workspace.refresh_jobs.get(key)
        if job is None or job.source_id != source["id"]:
            raise self._not_found()
        done = self._refreshed(job)
        if done:
            self._discover_tables(source)
        return JSONResponse({"status": "completed" if done else "processing"})

    def _refreshed(self, job: RefreshJob) -> bool:
        return time.time() - job.started >= self.config.refresh_seconds

    def _discover_tables(self, source: Source) -> None:
        """A source created here has no tables until a refresh of it completes, as in Census: then
        it finds the ones its warehouse holds (the same ones for the same id)."""
        if any(item["type"] == "table" for item in source["data_sources"]):
            return
        jobs = self.workspace.refresh_jobs.values()
        if any(job.source_id == source["id"] and self._refreshed(job) for job in jobs):
            taken = (
                item["id"] for other in self.workspace.sources.values() for item in other["data_sources"]
            )
            source["data_sources"] += discovered_tables(source["id"], first_id=max(taken, default=0) + 1)

    async def list_tables(self, request: Request) -> Response:
        source = self._source(request)
        self._discover_tables(source)
        search = request.query_params.get("search", "").lower()
        rows = [
            _table_row(source, data_source["name"])
            for data_source in source["data_sources"]
            if data_source["type"] == "table" and search in data_source["name"].lower()
        ]
        order = _table_order(request.query_params.get("order_by", _DEFAULT_TABLE_ORDER))
        for column, descending in reversed(order):
            rows.sort(key=itemgetter(column), reverse=descending)
        return _paginate(request, rows)

    async def list_source_types(self, request: Request) -> Response:
        return _paginate(request, list(SOURCE_TYPES.values()))

    async def get_source_type(self, request: Request) -> Response:
        source_type = SOURCE_TYPES.get(request.path_params["service_name"])
        if source_type is None:
            raise self._not_found()
        return JSONResponse({"status": "success", "data": source_type})


def create_sandbox_app(config: SandboxConfig = SandboxConfig()) -> Starlette:
    """Build a fresh sandbox; `app.state.workspace` exposes its state and request log to tests."""
    if config.state_path is None:
        workspace = Workspace.seeded(config.size, config.seed, config.faults)
    else:
        workspace = Workspace.kept_in(config.state_path, config.size, config.seed, config.faults)

    async def request_log(request: Request) -> Response:
        """The request log, for a benchmark that serves the sandbox in another process."""
        return JSONResponse([asdict(record) for record in workspace.requests])

    app = Starlette(
        routes=[
            *(Mount(v.prefix, routes=_Endpoints(workspace, config, v).routes()) for v in VERSIONS),
            Route("/_sandbox/requests", request_log, methods=["GET"]),
        ],
        middleware=[Middleware(_SandboxMiddleware, workspace=workspace, config=config)],
        exception_handlers={ApiError: _render_error, 404: _render_error},
    )
    app.state.workspace = workspace
    return app
