"""The Census REST client: auth, base URL, error mapping and pagination.

It knows HTTP and the Census API and nothing of MCP, so it can be reused and
tested on its own. Every failure leaves as a `CensusError` subclass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, ValidationError

from census_mcp.census.errors import (
    CensusAuthError,
    CensusConnectionError,
    CensusError,
    CensusForbiddenError,
    CensusNotFoundError,
    CensusRequestError,
    CensusResponseError,
    CensusUnavailableError,
)
from census_mcp.census.models import Page, RefreshJob, RefreshStatus, Source
from census_mcp.redaction import scrub, secret_values

MAX_PER_PAGE = 100
_M = TypeVar("_M", bound=BaseModel)
_MAX_MESSAGE_CHARS = 500


class CensusClient:
    """An async client for one Census workspace.

    `transport` lets the built-in sandbox be served in-process (ASGI) and tests
    inject a fake; by default it is real HTTP.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_seconds: float = 30.0,
        page_concurrency: int = 8,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._page_concurrency = page_concurrency
        self._http = httpx2.AsyncClient(
            base_url=self.base_url + "/",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"CensusClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # Sources

    async def list_sources(self, *, order: str = "desc") -> tuple[list[Source], int]:
        """Every source in the workspace, in API order, and the workspace's total_records."""
        rows, total = await self._list_all("sources", {"order": order})
        return [self._parse(Source, row) for row in rows], total

    async def get_source(self, source_id: int) -> Source:
        body = await self._request("GET", f"sources/{source_id}")
        return self._parse(Source, _data(body))

    async def create_source(self, connection: Mapping[str, Any]) -> Source | int:
        """POST /sources. Census answers with the whole source or, in older versions, only its id."""
        body = await self._request("POST", "sources", json={"connection": dict(connection)})
        data = _data(body)
        if set(data) <= {"id"}:
            return self._parse(Source, data).id
        return self._parse(Source, data)

    async def update_source(self, source_id: int, connection: Mapping[str, Any]) -> Source:
        body = await self._request("PATCH", f"sources/{source_id}", json={"connection": dict(connection)})
        return self._parse(Source, _data(body))

    async def delete_source(self, source_id: int) -> None:
        await self._request("DELETE", f"sources/{source_id}")

    async def refresh_tables(self, source_id: int) -> int:
        body = await self._request("POST", f"sources/{source_id}/refresh_tables")
        return self._parse(RefreshJob, body).refresh_key

    async def refresh_tables_status(self, source_id: int, refresh_key: int) -> str:
        body = await self._request(
            "GET", f"sources/{source_id}/refresh_tables_status", params={"refresh_key": refresh_key}
        )
        return self._parse(RefreshStatus, body).status

    # Plumbing

    async def _list_all(self, path: str, params: Mapping[str, str | int]) -> tuple[list[dict[str, Any]], int]:
        """Read page 1, learn last_page from it, then fetch the rest concurrently, in API order."""
        first = await self._page(path, params, 1)
        last_page = first.pagination.last_page
        pages: list[list[dict[str, Any]]] = [first.data] + [[] for _ in range(2, last_page + 1)]
        limiter = anyio.Semaphore(self._page_concurrency)

        async def fetch(number: int) -> None:
            async with limiter:
                pages[number - 1] = (await self._page(path, params, number)).data

        async with anyio.create_task_group() as group:
            for number in range(2, last_page + 1):
                group.start_soon(fetch, number)
        return [row for page in pages for row in page], first.pagination.total_records

    async def _page(self, path: str, params: Mapping[str, str | int], number: int) -> Page:
        body = await self._request("GET", path, params={**params, "page": number, "per_page": MAX_PER_PAGE})
        return self._parse(Page, body)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Any:
        where = f"{method} {self.base_url}/{path}"
        try:
            response = await self._http.request(method, path, params=params, json=json)
        except httpx2.TimeoutException:
            raise CensusConnectionError(f"{where} timed out (no answer from Census).") from None
        except httpx2.HTTPError as exc:
            reason = type(exc).__name__
            raise CensusConnectionError(f"{where} failed before Census answered: {reason}.") from None
        body = _json_or_none(response)
        if response.is_success:
            if body is None:
                raise CensusResponseError(
                    f"{where} answered HTTP {response.status_code} with a body that is not JSON.",
                    status_code=response.status_code,
                )
            return body
        raise self._error(response, body, where, secrets=[*secret_values(json), self._token])

    @staticmethod
    def _error(response: httpx2.Response, body: Any, where: str, *, secrets: list[str]) -> CensusError:
        status = response.status_code
        said = _census_message(body, response)
        said = scrub(said, secrets) if said else ""
        detail = f": {said}" if said else ""
        if status in (400, 422):
            return CensusRequestError(said or f"HTTP {status} without a message", status_code=status)
        if status == 401:
            return CensusAuthError(f"{where} answered 401: the API token was rejected.", status_code=status)
        if status == 403:
            return CensusForbiddenError(f"{where} answered 403{detail}", status_code=status)
        if status == 404:
            return CensusNotFoundError(f"{where} answered 404{detail}", status_code=status)
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


def _census_message(body: Any, response: httpx2.Response) -> str:
    """What Census said, from whichever error shape it used; a proxy's HTML page says only that."""
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            value = body.get(key)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                return text[:_MAX_MESSAGE_CHARS]
        return ""
    if "html" in response.headers.get("content-type", ""):
        return "an HTML error page (from a proxy or load balancer, not the API)"
    return ""
