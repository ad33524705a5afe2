"""Deterministic seed data: a realistic sandbox workspace, identical for the same seed and size.

Nothing here reads the wall clock, so tests and benchmarks can compare runs byte for byte.
"""

from __future__ import annotations

import itertools
import json
import random
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from census_mcp.sandbox.source_types import SOURCE_TYPES
from census_mcp.sandbox.versions import GROUPS

BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
SECRET_MARKER = "SANDBOX-SECRET"  # noqa: S105 - a marker inside fake secrets, not a secret
"""Every secret credential value contains this, so tests can assert that no secret leaks."""

_TYPE_WEIGHTS = {
    "snowflake": 35,
    "big_query": 20,
    "redshift": 15,
    "postgres": 12,
    "databricks": 10,
    "mysql": 4,
    "sql_server": 4,
}
_ENVS = ("prod", "staging", "dev", "sandbox")
_UNTESTED_SHARE = 0.18
_FAILURES: dict[str, tuple[str, ...]] = {
    "snowflake": (
        "Incorrect username or password was specified.",
        "JWT token is invalid.",
        "No active warehouse selected in the current session.",
        "User temporarily locked.",
    ),
    "big_query": ("Access Denied: Project: User does not have bigquery.jobs.create permission in project.",),
    "redshift": ('password authentication failed for user "census"',),
    "postgres": ("FATAL: no pg_hba.conf entry for host, SSL off",),
    "databricks": ("Invalid access token.",),
    "": ("Connection timed out after 30s", "getaddrinfo: Name or service not known"),
}
_PASSED_STEPS = ("connect", "list_schemas", "create_bookkeeping_schema", "write_access")
_HOSTS = {
    "redshift": ("{slug}.{code}.us-east-1.redshift.amazonaws.com", 5439),
    "postgres": ("{slug}.{code}.us-west-2.rds.amazonaws.com", 5432),
    "mysql": ("{slug}-mysql.{code}.eu-west-1.rds.amazonaws.com", 3306),
    "sql_server": ("{slug}.database.windows.net", 1433),
}
# fmt: off
_TEAMS = ("analytics", "marketing", "finance", "growth", "product", "sales", "revops", "data-platform",
          "support")
_SCHEMAS = ("analytics", "raw", "staging", "marts", "finance", "marketing", "public", "salesforce", "stripe",
            "hubspot", "product", "dbt_prod")
_TABLES = ("orders", "customers", "users", "accounts", "events", "sessions", "invoices", "payments",
           "subscriptions", "products", "leads", "opportunities", "contacts", "campaigns", "pageviews",
           "refunds", "plans", "tickets", "signups", "churn_scores", "line_items", "addresses", "shipments",
           "inventory", "experiments", "feature_flags", "workspaces", "memberships", "emails", "web_visits")
# fmt: on
_SUFFIXES = ("", "_daily", "_snapshot", "_v2", "_history", "_latest", "_archive", "_2024", "_dedup")
_TABLE_NAMES = [
    f"{schema}.{table}{suffix}" for schema in _SCHEMAS for table in _TABLES for suffix in _SUFFIXES
]
_MODEL_NAMES = [
    f"{qualifier} {noun}"
    for qualifier in ("Active", "Churned", "New", "High-value", "Dormant", "Trial", "Enterprise", "Weekly")
    for noun in ("users", "accounts", "customers", "leads", "orders", "subscriptions")
]
_STRESS_TABLES, _STRESS_MODELS = 3000, 40


def iso(moment: datetime) -> str:
    """Format a UTC datetime the way Census does: milliseconds and a Z suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _code(rng: random.Random, length: int = 6) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=length))


def _secret(what: str, source_id: int) -> str:
    return f"{SECRET_MARKER}-{what}-{source_id}"


def _snowflake(rng: random.Random, team: str, env: str, source_id: int) -> dict[str, Any]:
    keypair = rng.random() < 0.4
    details: dict[str, Any] = {
        "account": f"{_code(rng, 2)}{rng.randint(10000, 99999)}.{rng.choice(('us-east-1', 'eu-west-1'))}",
        "user": f"CENSUS_{team.upper().replace('-', '_')}",
        "warehouse": f"{env.upper()}_WH",
        "use_keypair": keypair,
    }
    if rng.random() < 0.5:
        secret_field = "private_key_passphrase" if keypair else "password"
        details[secret_field] = _secret(secret_field, source_id)
    return details


def _big_query(rng: random.Random, team: str, env: str, source_id: int) -> dict[str, Any]:
    project = f"{team}-{env}-{rng.randint(100, 999)}"
    account = f"census-{source_id}@{project}.iam.gserviceaccount.com"
    details: dict[str, Any] = {
        "project_id": project,
        "location": rng.choice(("US", "EU", "us-central1")),
        "service_account": account,
        "location_editable": False,
    }
    if rng.random() < 0.5:
        key = f"-----BEGIN PRIVATE KEY-----\n{_secret('private-key', source_id)}\n-----END PRIVATE KEY-----\n"
        details["service_account_key"] = json.dumps(
            {"type": "service_account", "project_id": project, "private_key": key, "client_email": account}
        )
    return details


def _databricks(rng: random.Random, team: str, env: str, source_id: int) -> dict[str, Any]:
    details: dict[str, Any] = {
        "host": f"dbc-{_code(rng, 8)}-{team}.cloud.databricks.com",
        "port": 443,
        "http_path": f"/sql/1.0/warehouses/{_code(rng, 16)}",
    }
    if rng.random() < 0.5:
        details["access_token"] = _secret("dapi", source_id)
    return details


def _sql(kind: str) -> Callable[[random.Random, str, str, int], dict[str, Any]]:
    """Details for the hostname/port/user/database warehouses, which differ only in host pattern and port."""
    host_pattern, port = _HOSTS[kind]

    def build(rng: random.Random, team: str, env: str, source_id: int) -> dict[str, Any]:
        ssh = kind in ("redshift", "postgres") and rng.random() < 0.25
        details: dict[str, Any] = {
            "hostname": host_pattern.format(slug=f"{team}-{env}", code=_code(rng)),
            "port": port,
            "user": f"census_{team.replace('-', '_')}",
            "database": f"{team.replace('-', '_')}_{env}",
        }
        if kind in ("redshift", "postgres"):
            details |= {
                "ssh_tunnel_enabled": ssh,
                "ssh_tunnel_hostname": f"bastion.{env}.example.com" if ssh else None,
                "ssh_tunnel_port": 22 if ssh else None,
                "ssh_tunnel_user": "census" if ssh else None,
            }
        if rng.random() < 0.5:
            details["password"] = _secret("pw", source_id)
        return details

    return build


_DETAILS: dict[str, Callable[[random.Random, str, str, int], dict[str, Any]]] = {
    "snowflake": _snowflake,
    "big_query": _big_query,
    "databricks": _databricks,
    **{kind: _sql(kind) for kind in _HOSTS},
}


def _name(rng: random.Random, kind: str, team: str, env: str, taken: set[str]) -> str:
    """A realistic, unique source name such as "Snowflake - analytics-prod" or "Redshift (Finance)"."""
    type_label = SOURCE_TYPES[kind]["label"]
    team_title = team.replace("-", " ").title()
    base = rng.choice(
        (
            f"{type_label} - {team}-{env}",
            f"{type_label} - {team}",
            f"{type_label} ({team_title})",
            f"{team_title} {env.title()} {type_label}",
        )
    )
    name, copies = base, 1
    while name in taken:
        copies += 1
        name = f"{base} {copies}"
    taken.add(name)
    return name


def _test_status(rng: random.Random, kind: str, created: datetime) -> dict[str, Any]:
    """About 12% failed (snowflake fails most), 18% never tested, the rest passed."""
    failed_share = 0.25 if kind == "snowflake" else 0.05
    roll = rng.random()
    if failed_share <= roll < failed_share + _UNTESTED_SHARE:
        return {"last_test_succeeded": None, "last_tested_at": None, "last_test_results": None}
    failed = roll < failed_share
    if failed:
        message = rng.choice(_FAILURES.get(kind, ()) + _FAILURES[""])
        steps: list[dict[str, Any]] = [{"step": "connect", "status": "failed", "error": {"message": message}}]
    else:
        steps = [{"step": step, "status": "passed"} for step in _PASSED_STEPS]
    tested_at = created + timedelta(minutes=rng.randint(5, 60 * 24 * 20))
    return {
        "last_test_succeeded": not failed,
        "last_tested_at": iso(tested_at),
        "last_test_results": {"steps": steps},
    }


def _data_sources(rng: random.Random, ids: Iterator[int], stress: bool) -> list[dict[str, Any]]:
    """Tables (schema.table) then models; the stress source carries thousands to exercise summarization."""
    tables, models = (_STRESS_TABLES, _STRESS_MODELS) if stress else (rng.randint(5, 60), rng.randint(0, 8))
    table_names, model_names = sorted(rng.sample(_TABLE_NAMES, tables)), rng.sample(_MODEL_NAMES, models)
    return [{"id": next(ids), "type": "table", "name": name} for name in table_names] + [
        {"id": next(ids), "type": "model", "name": name} for name in model_names
    ]


def discovered_tables(source_id: int, *, first_id: int) -> list[dict[str, Any]]:
    """The tables the first refresh of a source created in the sandbox finds, the same for the same
    source id, numbered from `first_id`."""
    rng = random.Random(source_id)  # noqa: S311 - reproducible fake data, not security
    names = sorted(rng.sample(_TABLE_NAMES, rng.randint(5, 30)))
    return [{"id": first_id + offset, "type": "table", "name": name} for offset, name in enumerate(names)]


def build_workspace(size: int, seed: int) -> list[dict[str, Any]]:
    """Build `size` sources with ids 1..size; the same seed and size always give the same list."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not security
    taken: set[str] = set()
    data_source_ids = itertools.count(1)
    created = BASE_TIME
    stress_pending = True
    sources: list[dict[str, Any]] = []
    for source_id in range(1, size + 1):
        kind = rng.choices(list(_TYPE_WEIGHTS), weights=list(_TYPE_WEIGHTS.values()))[0]
        team, env = rng.choice(_TEAMS), rng.choice(_ENVS)
        stress = stress_pending and kind == "snowflake"
        stress_pending &= not stress
        advanced = "advanced" in SOURCE_TYPES[kind]["supported_sync_engines"] and rng.random() < 0.3
        sources.append(
            {
                "id": source_id,
                "name": _name(rng, kind, team, env, taken),
                "label": None if rng.random() < 1 / 3 else f"{team.replace('-', ' ').title()} ({env})",
                "type": kind,
                **_test_status(rng, kind, created),
                "connection_details": _DETAILS[kind](rng, team, env, source_id),
                "read_only_connection": rng.random() < 0.15,
                "created_at": iso(created),
                "sync_engine": "advanced" if advanced else "basic",
                # By team, so that a group reads like a team's; no draw, so older seeds stay as they were.
                "group_id": GROUPS[_TEAMS.index(team) % len(GROUPS)],
                "data_sources": _data_sources(rng, data_source_ids, stress),
            }
        )
        created += timedelta(minutes=rng.randint(30, 720))
    return sources
