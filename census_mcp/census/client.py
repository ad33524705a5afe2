"""The Census REST client: auth, base URL, error mapping and pagination.

It knows HTTP and the Census API and nothing of MCP, so it can be reused and
tested on its own. Every failure leaves as a `CensusError` subclass.
"""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import date
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, ValidationError

from census_mcp.census.api import RETIRED_ADVICE, V1, ApiVersion, Operation, Route
from census_mcp.census.cache import Fetched, ListCache, ListStore, codec_for, token_digest
from census_mcp.census.errors import (
    CensusAuthError,
    CensusConflictError,
    CensusConnectionError,
    CensusError,
    CensusForbiddenError,
    CensusNotFoundError,
    CensusOperationUnavailableError,
    CensusRequestError,
    CensusResponseError,
    CensusRetiredError,
    CensusUnavailableError,
    CensusUnknownOutcomeError,
    CensusUnsendableError,
)
from census_mcp.census.models import (
    Listing,
    Page,
    Pagination,
    RefreshJob,
    RefreshStatus,
    Source,
    SourceType,
    Table,
)
from census_mcp.census.retry import IDEMPOTENT_METHODS, RETRY_STATUSES, RetryPolicy
from census_mcp.redaction import scrub, secret_values
from census_mcp.untrusted import quote

MAX_PER_PAGE = 100
DEFAULT_MAX_CONNECTIONS = 64
_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")
_write_statuses: ContextVar[list[int] | None] = ContextVar("census_write_statuses", default=None)


@contextmanager
def noting_write_statuses() -> Iterator[list[int]]:
    """The HTTP status of each write Census accepts inside this block, for the audit trail; a list
    the client appends to, so that writes made in tasks the block starts are noted too."""
    statuses: list[int] = []
    reset = _write_statuses.set(statuses)
    try:
        yield statuses
    finally:
        _write_statuses.reset(reset)


logger = logging.getLogger(__name__)
_MAX_MESSAGE_CHARS = 300


class CensusClient:
    """An async client for one Census workspace (v1) or for what one personal access token can
    reach (v2). `api` says which version it speaks; the methods are the same on both.

    `transport` lets the built-in sandbox be served in-process (ASGI) and tests
    inject a fake; by default it is real HTTP, over at most `max_connections` sockets (kept alive
    between calls), however many users and lists share the client. `origin` names what it talks to
    in the text of results ("the sandbox", for the built-in one).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api: ApiVersion = V1,
        timeout_seconds: float = 30.0,
        page_concurrency: int = 8,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        cache: ListStore | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        origin: str = "Census",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api = api
        self.origin = origin
        """What its results say they were read from: Census, or the built-in sandbox."""
        self._token = token
        self._timeout_seconds = timeout_seconds
        self._page_concurrency = page_concurrency
        self._retry = retry if retry is not None else RetryPolicy()
        self._cache: ListStore = cache if cache is not None else ListCache(ttl_seconds=0)
        self._owns_http = True
        self._http = httpx2.AsyncClient(
            base_url=self.base_url + "/",
            headers={"Accept": "application/json"},
            timeout=timeout_seconds,
            transport=transport,
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            # Bearer tokens need no cookies: one Census sets for a user must not ride along with the
            # next user's requests in passthrough, nor pile up in a shared client. None is kept.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )

    def __repr__(self) -> str:
        return f"CensusClient(base_url={self.base_url!r}, api={self.api.name!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def with_token(self, token: str) -> CensusClient:
        """A client for the same Census host, connection pool, cache and retries, acting with another
        token: per-user passthrough. It holds the token only as long as the caller holds it."""
        client = copy.copy(self)
        client._token = token
        client._owns_http = False
        return client

    # Sources

    async def list_sources(self, *, refresh: bool = False) -> Fetched[Listing[Source]]:
        """Every source the token can see, newest first, from the cache while it is fresh."""
        return await self._cached_list(Operation.LIST_SOURCES, Source, {"order": "desc"}, refresh=refresh)

    async def get_source(self, source_id: int) -> Source:
        body = await self._request(Operation.GET_SOURCE, source_id=source_id)
        return self._parse(Source, _data(body))

    async def create_source(
        self, connection: Mapping[str, Any], *, group_id: str | None = None
    ) -> Source | int:
        """POST /sources. Census answers with the whole source or, in older versions, only its id."""
        body = await self._write(Operation.CREATE_SOURCE, json=self.api.create_body(connection, group_id))
        data = _data(body)
        if set(data) <= {"id"}:
            return self._parse(Source, data).id
        return self._parse(Source, data)

    async def update_source(self, source_id: int, connection: Mapping[str, Any]) -> Source:
        body = await self._write(
            Operation.UPDATE_SOURCE, json={"connection": dict(connection)}, source_id=source_id
        )
        return self._parse(Source, _data(body))

    async def delete_source(self, source_id: int) -> None:
        await self._write(Operation.DELETE_SOURCE, source_id=source_id)

    async def refresh_tables(self, source_id: int) -> int:
        body = await self._write(Operation.REFRESH_TABLES, source_id=source_id)
        return self._parse(RefreshJob, body).refresh_key

    async def refresh_tables_status(self, source_id: int, refresh_key: int) -> str:
        body = await self._request(
            Operation.REFRESH_TABLES_STATUS, params={"refresh_key": refresh_key}, source_id=source_id
        )
        return self._parse(RefreshStatus, body).status

    async def list_tables(
        self, source_id: int, *, search: str | None = None, refresh: bool = False
    ) -> Fetched[Listing[Table]]:
        params = {"search": search} if search else {}
        return await self._cached_list(
            Operation.LIST_TABLES, Table, params, refresh=refresh, source_id=source_id
        )

    async def probe(self) -> Probe:
        """One small read, the newest source: whether Census takes the token, how many sources it
        lets this token see, and Census's clock (its Date header)."""
        route = self.api.route(Operation.LIST_SOURCES)
        where = self._where(route.method, route.path)

        def parse(response: httpx2.Response) -> Probe:
            body = _json_body(response, where)
            pagination = body.get("pagination") if isinstance(body, dict) else None
            total = self._parse(Pagination, pagination).total_records
            return Probe(sources=total, census_date=response.headers.get("date"))

        return await self._send(route, route.path, parse, params={"page": 1, "per_page": 1})

    # Source types

    async def list_source_types(self, *, refresh: bool = False) -> Fetched[Listing[SourceType]]:
        return await self._cached_list(Operation.LIST_SOURCE_TYPES, SourceType, {}, refresh=refresh)

    async def get_source_type(self, service_name: str) -> SourceType:
        body = await self._request(Operation.GET_SOURCE_TYPE, service_name=service_name)
        return self._parse(SourceType, _data(body))

    # Plumbing

    async def _cached_list(
        self, operation: Operation, model: type[_M], params: Mapping[str, str], *, refresh: bool, **ids: Any
    ) -> Fetched[Listing[_M]]:
        route = self.api.route(operation)
        path = route.path_for(**ids)

        async def fetch() -> Listing[_M]:
            try:
                return await self._list_all(route, path, params, model)
            except CensusNotFoundError as exc:
                raise await self._missing_route_or(exc, operation, ids) from None

        key = (self.base_url, token_digest(self._token), f"{path}?{sorted(params.items())}")
        fetched = await self._cache.get(key, fetch, refresh=refresh, codec=codec_for(model))
        return replace(fetched, origin=self.origin)

    async def _write(self, operation: Operation, *, json: Mapping[str, Any] | None = None, **ids: Any) -> Any:
        """A request that changes the workspace: cached lists are stale after it, whatever its outcome."""
        try:
            return await self._request(operation, json=json, noted=_write_statuses.get(), **ids)
        finally:
            await self._cache.clear(self.base_url)

    async def _missing_route_or(
        self, not_found: CensusNotFoundError, operation: Operation, ids: Mapping[str, Any]
    ) -> CensusError:
        """A 404 on an operation this version has not published: the operation is missing when the
        object its path names exists (or the path names none); otherwise the object is."""
        route = self.api.route(operation)
        if operation not in self.api.provisional:
            return not_found
        if route.scope == "source":
            try:
                await self.get_source(ids["source_id"])
            except CensusNotFoundError:
                return not_found
        elif route.scope == "source_type":
            types = (await self.list_source_types()).value.items
            if ids["service_name"] not in {source_type.service_name for source_type in types}:
                return not_found
        if route.keyed:
            maybe = f"if it is right, Census API {self.api.name} may not offer {route.does} yet. "
            hint = maybe + self.api.unavailable_advice(date.today())
            return CensusNotFoundError(not_found.message, status_code=404, hint=hint)
        where = self._where(route.method, route.path_for(**ids))
        exists = f" while the {route.scope.replace('_', ' ')} exists" if route.scope else ""
        return self._unavailable(route, f"{where} answered 404{exists}", 404)

    def _unavailable(self, route: Route, what_happened: str, status: int) -> CensusOperationUnavailableError:
        return CensusOperationUnavailableError(
            f"Census API {self.api.name} does not offer {route.does} yet ({what_happened}). "
            + self.api.unavailable_advice(date.today()),
            status_code=status,
        )

    async def _list_all(
        self, route: Route, path: str, params: Mapping[str, str | int], model: type[_M]
    ) -> Listing[_M]:
        """Every row of a paginated list, in API order.

        Page 2 is read alongside page 1, before last_page is known, so that a list of many
        pages takes two round trips instead of three; the rest follow concurrently, bounded.
        """
        limiter = anyio.Semaphore(self._page_concurrency)
        pages: dict[int, Page[_M]] = {}
        page_bytes: dict[int, int] = {}
        failures: dict[int, CensusError] = {}

        async def fetch(number: int, scope: anyio.CancelScope) -> None:
            try:
                async with limiter:
                    pages[number], page_bytes[number] = await self._page(route, path, params, number, model)
            except CensusError as exc:
                failures[number] = exc
                if number != 2:  # page 2 is speculative until page 1 says it exists
                    scope.cancel()

        async def fetch_all(numbers: range) -> None:
            async with anyio.create_task_group() as group:
                for number in numbers:
                    group.start_soon(fetch, number, group.cancel_scope)

        await fetch_all(range(1, 3))
        if 1 in failures:
            raise failures[1]
        last_page = pages[1].pagination.last_page
        await fetch_all(range(3, last_page + 1))
        needed = range(1, max(last_page, 1) + 1)
        for number in needed:
            if number in failures:
                raise failures[number]
        rows = [row for number in needed for row in pages[number].data]
        json_bytes = sum(page_bytes[number] for number in needed)
        return Listing(rows, pages[1].pagination.total_records, json_bytes)

    async def _page(
        self, route: Route, path: str, params: Mapping[str, str | int], number: int, model: type[_M]
    ) -> tuple[Page[_M], int]:
        """One page, and its size in bytes (what its rows will weigh in the list cache)."""
        page_params = {**params, "page": number, "per_page": MAX_PER_PAGE}
        where = self._where(route.method, path)

        def parse(response: httpx2.Response) -> tuple[Page[_M], int]:
            # Straight from the bytes: lists are where the parsing time goes.
            try:
                page = Page[model].model_validate_json(response.content)  # type: ignore[valid-type]
            except ValidationError:
                # Parsed again only to say precisely what was wrong.
                page = self._parse(Page[model], _json_body(response, where))  # type: ignore[valid-type]
            return page, len(response.content)

        return await self._send(route, path, parse, params=page_params)

    async def _request(
        self,
        operation: Operation,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
        noted: list[int] | None = None,
        **ids: Any,
    ) -> Any:
        """One request's JSON answer; its status is appended to `noted`, when given."""
        route = self.api.route(operation)
        path = route.path_for(**ids)
        where = self._where(route.method, path)

        def parse(response: httpx2.Response) -> Any:
            if noted is not None:
                noted.append(response.status_code)
            return _json_body(response, where)

        try:
            return await self._send(route, path, parse, params=params, json=json)
        except CensusNotFoundError as exc:
            raise await self._missing_route_or(exc, operation, ids) from None

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _where(self, method: str, path: str) -> str:
        return f"{method} {self.base_url}/{path}"

    async def _send(
        self,
        route: Route,
        path: str,
        parse: Callable[[httpx2.Response], _T],
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> _T:
        """One request, retried while that is safe and time allows; its parsed answer, or a CensusError.

        GET, PATCH and DELETE are repeated on 429, 5xx, timeouts, dropped connections and
        unreadable answers. A POST is repeated only when it surely never reached Census (the
        connection failed before it was sent); when it may have, the error says its outcome
        is unknown, so that nothing is ever created twice.
        """
        method = route.method
        where = self._where(method, path)
        policy = self._retry
        started = policy.clock()
        idempotent = method in IDEMPOTENT_METHODS
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(route, path, parse, params, json, policy.remaining(started))
            if not isinstance(outcome, _Failure):
                return outcome
            retryable = outcome.before_sending or (idempotent and outcome.transient)
            elapsed = policy.clock() - started
            if retryable and attempt < policy.max_attempts:
                wait = policy.delay(attempt, outcome.retry_after)
                if wait < policy.remaining(started, unreachable=outcome.unreachable):
                    logger.info("Retrying %s in %.2f s after: %s", where, wait, outcome.error.message)
                    await policy.sleep(wait)
                    continue
            raise _final(outcome, attempt, elapsed, unknown=not idempotent and outcome.may_have_reached)

    async def _attempt(
        self,
        route: Route,
        path: str,
        parse: Callable[[httpx2.Response], _T],
        params: Mapping[str, str | int] | None,
        json: Mapping[str, Any] | None,
        remaining: float,
    ) -> _T | _Failure:
        method = route.method
        where = self._where(method, path)
        if remaining <= 0:
            return _Failure(CensusConnectionError(f"{where} was not sent: the time for this call ran out."))
        timeout = min(self._timeout_seconds, remaining)
        try:
            response = await self._http.request(
                method, path, params=params, json=json, timeout=timeout, headers=self._auth_header()
            )
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            error: CensusError = CensusConnectionError(
                f"{where} could not connect to Census at {_host_and_port(self._http.base_url)}: "
                f"{_why_unreachable(exc)}."
            )
            return _Failure(error, before_sending=True, unreachable=True)
        except httpx2.PoolTimeout:
            error = CensusConnectionError(f"{where} found every connection to Census busy.")
            return _Failure(error, before_sending=True)
        except (httpx2.UnsupportedProtocol, httpx2.InvalidURL) as exc:
            error = CensusConnectionError(
                f"{where} cannot be sent: the base URL is unusable ({type(exc).__name__})."
            )
            return _Failure(error, transient=False)
        except httpx2.TimeoutException:
            error = CensusConnectionError(
                f"{where} timed out after {timeout:.1f} s with no answer from Census."
            )
            return _Failure(error, may_have_reached=True)
        except httpx2.LocalProtocolError as exc:
            # Raised before a byte is sent, and raised again on every attempt: not the network's doing.
            error = CensusUnsendableError(
                f"{where} was not sent: census-mcp's HTTP client refused to write it ({type(exc).__name__}), "
                "so Census never saw it and repeating it cannot help. The API token (CENSUS_API_TOKEN) may "
                "hold a character an HTTP header cannot carry: set it to the token alone."
            )
            return _Failure(error, transient=False)
        except (UnicodeEncodeError, ValueError) as exc:
            # The tools' schemas refuse such input first; this keeps the client safe on its own.
            message = f"{where} could not be sent: its content cannot be encoded ({type(exc).__name__})."
            return _Failure(CensusRequestError(message), transient=False)
        except httpx2.HTTPError as exc:
            error = CensusConnectionError(
                f"{where} lost its connection before Census answered ({type(exc).__name__})."
            )
            return _Failure(error, may_have_reached=True)
        if not response.is_success:
            secrets = [*secret_values(json), self._token]
            error = self._error(response, _json_or_none(response), route, where, secrets=secrets)
            status = response.status_code
            return _Failure(
                error,
                transient=status in RETRY_STATUSES,
                retry_after=response.headers.get("retry-after"),
                # A 429 is refused before any work; a 5xx may come after some.
                may_have_reached=status >= 500,
            )
        try:
            return parse(response)
        except CensusResponseError as exc:
            return _Failure(exc, may_have_reached=True)

    def _error(
        self, response: httpx2.Response, body: Any, route: Route, where: str, *, secrets: list[str]
    ) -> CensusError:
        status = response.status_code
        said = _census_message(body, response, secrets)
        detail = f": {said}" if said else ""
        if self.api.says_retired(status, said):
            message = f"Census has retired API {self.api.name} ({where} answered {status}{detail}). "
            return CensusRetiredError(message + RETIRED_ADVICE, status_code=status)
        if status in self.api.missing_statuses:
            return self._unavailable(route, f"{where} answered {status}{detail}", status)
        if status in (400, 422):
            return CensusRequestError(said or f"HTTP {status} without a message", status_code=status)
        if status == 401:
            advice = self.api.token_mismatch(self._token) or (
                f"Check CENSUS_API_TOKEN: it must be a {self.api.credential_kind} for this host "
                f"({self.api.host_settings})."
            )
            return CensusAuthError(f"Census rejected the API token (401). {advice}", status_code=status)
        if status == 403:
            return CensusForbiddenError(f"{where} answered 403{detail}", status_code=status)
        if status == 404:
            return CensusNotFoundError(f"{where} answered 404{detail}", status_code=status)
        if status == 409:
            return CensusConflictError(said or f"{where} answered 409", status_code=status)
        if status == 429 or status >= 500:
            return CensusUnavailableError(f"{where} answered HTTP {status}{detail}", status_code=status)
        return CensusRequestError(f"{where} answered HTTP {status}{detail}", status_code=status)

    @staticmethod
    def _parse(model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in err["loc"]) or "body" for err in exc.errors()})
            raise CensusResponseError(
                f"Census answered with an unexpected {model.__name__} (fields: {', '.join(fields)})."
            ) from None


@dataclass(frozen=True)
class Probe:
    sources: int
    census_date: str | None
    """Census's Date header, as sent."""


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, and what it tells about trying again."""

    error: CensusError
    before_sending: bool = False  # the request never left: repeating it is always safe
    unreachable: bool = False  # refused or unresolvable: worth only a short while of retrying
    may_have_reached: bool = False  # Census may have acted on it
    transient: bool = True  # worth asking again
    retry_after: str | None = None


def _final(failure: _Failure, attempts: int, elapsed: float, *, unknown: bool) -> CensusError:
    """The error to raise after the last attempt, saying how hard this tried."""
    message = failure.error.message
    if attempts > 1:
        message += f" Gave up after {attempts} attempts over {elapsed:.1f} s."
    if unknown:
        return CensusUnknownOutcomeError(message, status_code=failure.error.status_code)
    return type(failure.error)(message, status_code=failure.error.status_code)


def _host_and_port(url: httpx2.URL) -> str:
    return f"{url.host}:{url.port}" if url.port else url.host


def _why_unreachable(exc: httpx2.HTTPError) -> str:
    """What stopped the connection, in words, from the OS error underneath httpx's."""
    if isinstance(exc, httpx2.ConnectTimeout):
        return "no answer to the connection attempt"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "its name does not resolve (DNS)"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        cause = cause.__cause__ or cause.__context__
    return f"the connection failed ({type(exc).__name__})"


def _json_body(response: httpx2.Response, where: str) -> Any:
    body = _json_or_none(response)
    if body is None:
        raise CensusResponseError(
            f"{where} answered HTTP {response.status_code} with a body that is not JSON.",
            status_code=response.status_code,
        )
    return body


def _data(body: Any) -> dict[str, Any]:
    """The `data` object of a Census envelope."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise CensusResponseError("Census answered without the expected `data` object.")
    return data


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _census_message(body: Any, response: httpx2.Response, secrets: list[str]) -> str:
    """What Census said, from whichever error shape it used, scrubbed of secrets it echoed and
    quoted as data; a proxy's HTML page says only that it was one."""
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            value = body.get(key)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                return quote(scrub(text, secrets), _MAX_MESSAGE_CHARS)
        return ""
    if "html" in response.headers.get("content-type", ""):
        return "an HTML error page (from a proxy or load balancer, not the API)"
    return ""
