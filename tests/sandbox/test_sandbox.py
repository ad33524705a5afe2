"""Behaviour of the simulated Census workspace that the client and the MCP tools are tested against."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from starlette.applications import Starlette

from census_mcp.sandbox import SANDBOX_TOKEN, SandboxConfig, Workspace, create_sandbox_app
from census_mcp.sandbox.app import MAX_REFRESH_JOBS
from census_mcp.sandbox.seed import SECRET_MARKER, build_workspace

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
REDSHIFT: dict[str, Any] = {
    "type": "redshift",
    "credentials": {
        "hostname": "demo.abc.us-east-1.redshift.amazonaws.com",
        "port": "5439",
        "user": "census",
        "password": f"{SECRET_MARKER}-new",
        "database": "demo",
    },
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(app: Starlette, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox/api/v1", headers=headers or AUTH
    )


def _workspace(app: Starlette) -> Workspace:
    workspace: Workspace = app.state.workspace
    return workspace


@pytest.fixture
def app() -> Starlette:
    return create_sandbox_app(SandboxConfig(refresh_seconds=0.05))


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    async with _client(app) as client:
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer secret-token:wrong"}, {"Authorization": "x"}]
)
async def test_missing_or_unknown_token_gets_bare_401(app: Starlette, headers: dict[str, str]) -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox/api/v1", headers=headers
    ) as client:
        response = await client.get("/sources")
    assert response.status_code == 401
    assert response.content == b'{"status":401}'


@pytest.mark.anyio
async def test_forbidden_token_gets_403() -> None:
    app = create_sandbox_app(SandboxConfig(forbidden_tokens=("secret-token:other",)))
    async with _client(app, {"Authorization": "Bearer secret-token:other"}) as client:
        response = await client.get("/sources/1")
    assert response.status_code == 403
    assert response.json() == {
        "status": "error",
        "message": "This API token does not have access to this workspace.",
    }


@pytest.mark.anyio
async def test_list_sources_paginates_newest_first(client: httpx2.AsyncClient) -> None:
    response = await client.get("/sources", params={"per_page": 25})
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "success"
    assert body["pagination"] == {
        "total_records": 60,
        "per_page": 25,
        "prev_page": None,
        "page": 1,
        "next_page": 2,
        "last_page": 3,
    }
    assert body["next"] == "http://sandbox/api/v1/sources?page=2&per_page=25"
    assert [source["id"] for source in body["data"]] == list(range(60, 35, -1))
    assert "data_sources" not in body["data"][0]
    assert set(body["data"][0]) >= {"id", "name", "label", "type", "connection_details", "created_at"}


@pytest.mark.anyio
async def test_pagination_edges(client: httpx2.AsyncClient) -> None:
    clamped = (await client.get("/sources", params={"per_page": 500, "page": 0, "order": "asc"})).json()
    assert clamped["pagination"]["per_page"] == 100
    assert clamped["pagination"]["page"] == 1
    assert clamped["pagination"]["last_page"] == 1
    assert clamped["next"] is None
    assert [source["id"] for source in clamped["data"]] == list(range(1, 61))

    past_end = (await client.get("/sources", params={"page": 9})).json()
    assert past_end["data"] == []
    assert past_end["pagination"] == {
        "total_records": 60,
        "per_page": 25,
        "prev_page": 8,
        "page": 9,
        "next_page": None,
        "last_page": 3,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    "params", [{"page": "two"}, {"per_page": "1.5"}, {"order": "newest"}, {"per_page": 0}]
)
async def test_bad_list_parameters_get_400(client: httpx2.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/sources", params=params)
    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert response.json()["message"]


@pytest.mark.anyio
async def test_empty_workspace_has_one_last_page() -> None:
    async with _client(create_sandbox_app(SandboxConfig(size=0))) as client:
        body = (await client.get("/sources")).json()
    assert body["data"] == []
    assert body["pagination"]["last_page"] == 1
    assert body["pagination"]["next_page"] is None


def test_seed_is_deterministic_and_realistic() -> None:
    assert build_workspace(60, 7) == build_workspace(60, 7)
    assert build_workspace(60, 7) != build_workspace(60, 8)
    sources = build_workspace(1000, 7)
    assert [source["id"] for source in sources] == list(range(1, 1001))
    assert len({source["name"] for source in sources}) == 1000
    created = [source["created_at"] for source in sources]
    assert created == sorted(created)
    assert created[0] == "2025-01-06T09:00:00.000Z"
    failed_snowflake = [s for s in sources if s["type"] == "snowflake" and s["last_test_succeeded"] is False]
    assert 80 <= len(failed_snowflake) <= 100
    assert all(s["last_test_results"]["steps"][0]["error"]["message"] for s in failed_snowflake)
    untested = [s for s in sources if s["last_tested_at"] is None]
    assert all(s["last_test_succeeded"] is None and s["last_test_results"] is None for s in untested)
    stress = next(s for s in sources if s["type"] == "snowflake")
    kinds = [data_source["type"] for data_source in stress["data_sources"]]
    assert (kinds.count("table"), kinds.count("model")) == (3000, 40)


def test_every_secret_carries_the_marker() -> None:
    secret_fields = {"password", "private_key_passphrase", "service_account_key", "access_token"}
    secrets = [
        value
        for source in build_workspace(300, 7)
        for key, value in source["connection_details"].items()
        if key in secret_fields
    ]
    assert secrets
    assert all(SECRET_MARKER in value for value in secrets)


@pytest.mark.anyio
async def test_get_source_includes_data_sources(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/sources/1")).json()
    assert body["status"] == "success"
    assert body["data"]["id"] == 1
    assert all(set(item) == {"id", "type", "name"} for item in body["data"]["data_sources"])
    assert any(item["type"] == "table" and "." in item["name"] for item in body["data"]["data_sources"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/sources/999", {"status": "not_found"}),
        ("GET", "/sources/abc", {"status": 404}),
        ("PATCH", "/sources/999", {"status": "not_found"}),
        ("DELETE", "/sources/999", {"status": 404}),
        ("POST", "/sources/999/refresh_tables", {"status": "not_found"}),
        ("GET", "/sources/999/tables", {"status": "not_found"}),
        ("GET", "/source_types/oracle", {"status": "not_found"}),
    ],
)
async def test_not_found_shapes(client: httpx2.AsyncClient, method: str, path: str, expected: Any) -> None:
    response = await client.request(method, path, json={"connection": {"label": "x"}})
    assert response.status_code == 404
    assert response.json() == expected


@pytest.mark.anyio
async def test_unknown_path_gets_proxy_html(client: httpx2.AsyncClient) -> None:
    response = await client.get("/syncs")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html><body><h1>404 Not Found</h1></body></html>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ("not json", "connection"),
        ({"connection": "redshift"}, "connection"),
        ({"connection": {"type": "oracle", "credentials": {}}}, "snowflake"),
        ({"connection": {"type": "google_sheets", "credentials": {}}}, "connect link"),
        ({"connection": {"type": "redshift", "credentials": "hostname=x"}}, "credentials"),
        (
            {"connection": {"type": "redshift", "credentials": REDSHIFT["credentials"] | {"password": None}}},
            "Missing required credential: password",
        ),
        (
            {
                "connection": {
                    "type": "snowflake",
                    "credentials": {"account": "a", "user": "u", "warehouse": "w", "use_keypair": True},
                }
            },
            "Missing required credential: private_key_pkcs8",
        ),
        (
            {
                "connection": {
                    "type": "big_query",
                    "credentials": {"project_id": "p", "location": f"{SECRET_MARKER}-location"},
                }
            },
            "location",
        ),
    ],
)
async def test_create_validation_answers_422_without_echoing_values(
    client: httpx2.AsyncClient, body: Any, message_part: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = await client.post("/sources", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["status"] == "error"
    assert message_part in response.json()["message"]
    assert SECRET_MARKER not in response.text
    assert "hostname=x" not in response.text


@pytest.mark.anyio
async def test_snowflake_password_is_required_unless_keypair(client: httpx2.AsyncClient) -> None:
    credentials = {"account": "xy1.us-east-1", "user": "U", "warehouse": "W"}
    missing = await client.post(
        "/sources", json={"connection": {"type": "snowflake", "credentials": credentials}}
    )
    assert missing.json()["message"] == "Missing required credential: password"
    keypair = credentials | {"use_keypair": True, "private_key_pkcs8": f"{SECRET_MARKER}-key"}
    created = await client.post(
        "/sources", json={"connection": {"type": "snowflake", "credentials": keypair}}
    )
    assert created.status_code == 201


@pytest.mark.anyio
async def test_create_answers_id_only_by_default(app: Starlette, client: httpx2.AsyncClient) -> None:
    response = await client.post("/sources", json={"connection": REDSHIFT})
    assert response.status_code == 201
    assert response.json() == {"status": "created", "data": {"id": 61}}
    source = (await client.get("/sources/61")).json()["data"]
    assert source["name"] == "Redshift - demo.abc.us-east-1.redshift.amazonaws.com"
    assert source["label"] is None
    assert source["last_test_succeeded"] is None
    assert source["read_only_connection"] is False
    assert source["sync_engine"] == "basic"
    assert source["created_at"].endswith("Z")
    assert source["connection_details"] == REDSHIFT["credentials"]
    assert (await client.get("/sources")).json()["data"][0]["id"] == 61
    assert _workspace(app).next_id == 62


@pytest.mark.anyio
async def test_create_can_answer_the_full_source() -> None:
    async with _client(create_sandbox_app(SandboxConfig(create_returns_full=True))) as client:
        connection = REDSHIFT | {"label": "Demo", "read_only_connection": True}
        response = await client.post("/sources", json={"connection": connection})
    data = response.json()["data"]
    assert response.status_code == 201
    assert (data["id"], data["name"], data["label"], data["read_only_connection"]) == (
        61,
        "Demo",
        "Demo",
        True,
    )
    assert data["data_sources"] == []


@pytest.mark.anyio
async def test_patch_merges_credentials_and_renames(client: httpx2.AsyncClient) -> None:
    before = (await client.get("/sources/3")).json()["data"]
    response = await client.patch(
        "/sources/3", json={"connection": {"credentials": {"database": "demo_v2"}, "label": "Renamed"}}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "updated"
    after = response.json()["data"]
    assert after["connection_details"] == before["connection_details"] | {"database": "demo_v2"}
    assert (after["name"], after["label"]) == ("Renamed", "Renamed")
    assert after["data_sources"] == before["data_sources"]

    empty = await client.patch("/sources/3", json={"connection": {}})
    assert empty.status_code == 422
    assert empty.json()["status"] == "error"


@pytest.mark.anyio
async def test_delete_removes_the_source_and_never_reuses_its_id(client: httpx2.AsyncClient) -> None:
    response = await client.delete("/sources/60")
    assert response.status_code == 200
    assert response.json() == {"status": "deleted"}
    assert (await client.get("/sources/60")).json() == {"status": "not_found"}
    assert (await client.delete("/sources/60")).json() == {"status": 404}
    created = await client.post("/sources", json={"connection": REDSHIFT})
    assert created.json()["data"]["id"] == 61


@pytest.mark.anyio
async def test_refresh_goes_from_processing_to_completed(client: httpx2.AsyncClient) -> None:
    first = (await client.post("/sources/2/refresh_tables")).json()
    second = (await client.post("/sources/2/refresh_tables")).json()
    assert set(first) == {"refresh_key"}
    assert second["refresh_key"] != first["refresh_key"] > 0
    status_path = "/sources/2/refresh_tables_status"
    processing = await client.get(status_path, params={"refresh_key": first["refresh_key"]})
    assert processing.json() == {"status": "processing"}
    await anyio.sleep(0.06)
    completed = await client.get(status_path, params={"refresh_key": first["refresh_key"]})
    assert completed.json() == {"status": "completed"}

    missing = await client.get(status_path)
    assert missing.status_code == 400
    assert missing.json() == {"status": 400, "message": "refresh_key is required"}
    foreign = await client.get(
        "/sources/3/refresh_tables_status", params={"refresh_key": first["refresh_key"]}
    )
    assert foreign.json() == {"status": "not_found"}


@pytest.mark.anyio
async def test_source_types(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/source_types", params={"order": "ignored"})).json()
    types = {item["service_name"]: item for item in body["data"]}
    assert body["pagination"]["total_records"] == len(types) >= 10
    assert {"snowflake", "big_query", "redshift", "postgres", "databricks"} <= set(types)
    assert types["google_sheets"]["creatable_via_api"] is False
    snowflake = (await client.get("/source_types/snowflake")).json()
    assert snowflake["status"] == "success"
    fields = {item["id"]: item for item in snowflake["data"]["configuration_fields"]["fields"]}
    assert fields["password"]["show"] == {"unless": {"use_keypair": True}}
    assert fields["private_key_pkcs8"]["is_password_type_field"] is True
    location = types["big_query"]["configuration_fields"]["fields"][1]
    assert location["id"] == "location"
    assert "US" in location["possible_values"]


@pytest.mark.anyio
async def test_tables_search_order_and_pagination(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/sources/1/tables", params={"per_page": 100})).json()
    assert body["pagination"]["total_records"] == 3000
    assert body["pagination"]["last_page"] == 30
    rows = body["data"]
    assert set(rows[0]) == {"table_catalog", "table_schema", "table_name", "last_refreshed_at"}
    assert rows == sorted(rows, key=lambda row: (row["table_schema"], row["table_name"]))

    found = (
        await client.get("/sources/1/tables", params={"search": "STRIPE.INVOICES", "per_page": 100})
    ).json()
    assert found["data"]
    assert all(
        f"{row['table_schema']}.{row['table_name']}".startswith("stripe.invoices") for row in found["data"]
    )

    ordered = await client.get("/sources/1/tables", params={"order_by": "table_schema:desc,table_name:asc"})
    schemas = [row["table_schema"] for row in ordered.json()["data"]]
    assert schemas[0] == "stripe"
    assert (await client.get("/sources/1/tables", params={"order_by": "name"})).status_code == 400


@pytest.mark.anyio
async def test_request_log_records_every_request_and_overlap() -> None:
    app = create_sandbox_app(SandboxConfig(latency_seconds=0.05))
    async with _client(app) as client, anyio.create_task_group() as group:
        group.start_soon(client.get, "/sources")
        group.start_soon(client.get, "/sources/1")
        group.start_soon(client.get, "/nowhere?x=1")
    records = _workspace(app).requests
    assert sorted((record.method, record.path, record.query) for record in records) == [
        ("GET", "/api/v1/nowhere", "x=1"),
        ("GET", "/api/v1/sources", ""),
        ("GET", "/api/v1/sources/1", ""),
    ]
    assert all(record.finished - record.started >= 0.05 for record in records)
    assert max(record.started for record in records) < min(record.finished for record in records)

    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://sandbox") as anon:
        await anon.get("/api/v1/sources")
    assert len(records) == 4


@pytest.mark.anyio
async def test_only_the_newest_refresh_jobs_are_kept() -> None:
    app = create_sandbox_app(SandboxConfig(refresh_seconds=0))
    async with _client(app) as client:
        keys = [
            (await client.post("/sources/2/refresh_tables")).json()["refresh_key"]
            for _ in range(MAX_REFRESH_JOBS + 5)
        ]
        status_path = "/sources/2/refresh_tables_status"
        oldest = await client.get(status_path, params={"refresh_key": keys[4]})
        kept = await client.get(status_path, params={"refresh_key": keys[5]})
    assert oldest.json() == {"status": "not_found"}
    assert kept.json() == {"status": "completed"}
    assert sorted(_workspace(app).refresh_jobs) == keys[5:]


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_any_token_mode_accepts_every_token_but_the_forbidden(version: str) -> None:
    app = create_sandbox_app(SandboxConfig(any_token=True, forbidden_tokens=("user-refused",)))

    async def status(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=f"http://sandbox/api/{version}", headers=headers
        ) as client:
            return (await client.get("/sources/1")).status_code

    assert [await status(f"user-{number}") for number in range(3)] == [200] * 3
    assert await status("user-refused") == 403
    assert await status("") == 401
