"""The sandbox's source type catalog: served by /source_types and used to validate POST /sources.

Keeping one definition for both means the client can trust /source_types to describe exactly what
create_source will accept, as Census documents it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Field = dict[str, Any]
SourceType = dict[str, Any]

_INPUT_TYPES = {"boolean": "checkbox", "integer": "number", "text": "textarea", "string": "text"}
_IF_SSH = {"if": {"ssh_tunnel_enabled": True}}
_IF_KEYPAIR = {"if": {"use_keypair": True}}
_UNLESS_KEYPAIR = {"unless": {"use_keypair": True}}


def _field(
    field_id: str,
    label: str,
    *,
    kind: str = "string",
    required: bool = True,
    password: bool = False,
    placeholder: str = "",
    values: list[str] | None = None,
    hint: str = "",
    show: Mapping[str, Any] | None = None,
) -> Field:
    """Build one configuration field in the shape Census's /source_types returns."""
    input_type = "password" if password else "select" if values else _INPUT_TYPES[kind]
    return {
        "id": field_id,
        "label": label,
        "type": kind,
        "rules": "required" if required else "",
        "placeholder": placeholder,
        "is_password_type_field": password,
        "possible_values": values,
        "hint": hint,
        "input_type": input_type,
        "show": dict(show) if show else None,
    }


def _sql_fields(host_placeholder: str, port: int) -> list[Field]:
    """The hostname/port/user/password/database block shared by the SQL warehouses."""
    return [
        _field("hostname", "Hostname", placeholder=host_placeholder),
        _field("port", "Port", kind="integer", placeholder=str(port)),
        _field("user", "User", placeholder="census"),
        _field("password", "Password", password=True),
        _field("database", "Database", placeholder="analytics"),
    ]


_SSH_FIELDS = [
    _field("ssh_tunnel_enabled", "Connect via SSH tunnel", kind="boolean", required=False),
    _field("ssh_tunnel_hostname", "SSH tunnel hostname", placeholder="bastion.example.com", show=_IF_SSH),
    _field("ssh_tunnel_port", "SSH tunnel port", kind="integer", placeholder="22", show=_IF_SSH),
    _field("ssh_tunnel_user", "SSH tunnel user", placeholder="census", show=_IF_SSH),
]


def _source_type(
    service_name: str,
    label: str,
    fields: list[Field],
    *,
    slug: str | None = None,
    via_api: bool = True,
    advanced: bool = False,
    writeback: bool = False,
) -> SourceType:
    """Build one /source_types entry; most flags default to the common case."""
    return {
        "service_name": service_name,
        "label": label,
        "documentation_slug": slug or service_name.replace("_", "-"),
        "creatable_via_api": via_api,
        "creatable_via_connect_link": True,
        "supported_sync_engines": ["basic", "advanced"] if advanced else ["basic"],
        "supports_warehouse_writeback": writeback,
        "configuration_fields": {"fields": fields},
    }


_CATALOG = [
    _source_type(
        "athena",
        "Amazon Athena",
        [
            _field("region", "AWS region", values=["us-east-1", "us-west-2", "eu-west-1", "eu-central-1"]),
            _field("s3_output_location", "Query results location", placeholder="s3://bucket/census/"),
            _field("access_key_id", "Access key ID"),
            _field("secret_access_key", "Secret access key", password=True),
        ],
    ),
    _source_type(
        "big_query",
        "BigQuery",
        [
            _field("project_id", "Project ID", placeholder="my-project-123"),
            _field("location", "Location", values=["US", "EU", "us-central1", "us-east1", "europe-west1"]),
            _field(
                "service_account_key",
                "Service account key (JSON)",
                kind="text",
                required=False,
                password=True,
                hint="Leave empty to grant access to the Census-managed service account instead.",
            ),
        ],
        slug="bigquery",
        advanced=True,
        writeback=True,
    ),
    _source_type("clickhouse", "ClickHouse", _sql_fields("abc123.clickhouse.cloud", 8443)),
    _source_type(
        "databricks",
        "Databricks",
        [
            _field("host", "Server hostname", placeholder="dbc-1234abcd-5678.cloud.databricks.com"),
            _field("port", "Port", kind="integer", placeholder="443"),
            _field("http_path", "HTTP path", placeholder="/sql/1.0/warehouses/abc123"),
            _field("access_token", "Personal access token", password=True),
        ],
        advanced=True,
        writeback=True,
    ),
    _source_type(
        "google_sheets",
        "Google Sheets",
        [_field("spreadsheet_url", "Spreadsheet URL", hint="Authorize Google through a connect link.")],
        via_api=False,
    ),
    _source_type("mysql", "MySQL", _sql_fields("db.example.com", 3306)),
    _source_type(
        "postgres",
        "Postgres",
        _sql_fields("db.example.com", 5432) + _SSH_FIELDS,
        slug="postgresql",
        advanced=True,
        writeback=True,
    ),
    _source_type(
        "redshift",
        "Redshift",
        _sql_fields("cluster.abc123.us-east-1.redshift.amazonaws.com", 5439) + _SSH_FIELDS,
        advanced=True,
        writeback=True,
    ),
    _source_type(
        "snowflake",
        "Snowflake",
        [
            _field("account", "Account", placeholder="xy12345.us-east-1"),
            _field("user", "User", placeholder="CENSUS"),
            _field("warehouse", "Warehouse", placeholder="COMPUTE_WH"),
            _field("use_keypair", "Authenticate with a key pair", kind="boolean", required=False),
            _field("password", "Password", password=True, show=_UNLESS_KEYPAIR),
            _field("private_key_pkcs8", "Private key (PKCS#8)", kind="text", password=True, show=_IF_KEYPAIR),
            _field(
                "private_key_passphrase", "Key passphrase", required=False, password=True, show=_IF_KEYPAIR
            ),
        ],
        advanced=True,
        writeback=True,
    ),
    _source_type("sql_server", "SQL Server", _sql_fields("db.example.database.windows.net", 1433)),
]

SOURCE_TYPES: dict[str, SourceType] = {entry["service_name"]: entry for entry in _CATALOG}


def _conditions_hold(conditions: Mapping[str, Any], credentials: Mapping[str, Any]) -> bool:
    return all(credentials.get(key) == value for key, value in conditions.items())


def _is_shown(field: Field, credentials: Mapping[str, Any]) -> bool:
    """Apply Census's show.if / show.unless so that conditionally required fields are judged correctly."""
    show = field["show"]
    if show is None:
        return True
    if "if" in show:
        return _conditions_hold(show["if"], credentials)
    return not _conditions_hold(show["unless"], credentials)


def credential_problem(source_type: SourceType, credentials: Mapping[str, Any]) -> str | None:
    """Describe the first invalid credential without ever quoting a credential value."""
    for field in source_type["configuration_fields"]["fields"]:
        if not _is_shown(field, credentials):
            continue
        value = credentials.get(field["id"])
        if field["rules"] == "required" and value in (None, ""):
            return f"Missing required credential: {field['id']}"
        if field["possible_values"] and value is not None and value not in field["possible_values"]:
            allowed = ", ".join(field["possible_values"])
            return f"Invalid value for credential {field['id']}: expected one of {allowed}"
    return None
