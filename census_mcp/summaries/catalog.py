"""What a workspace can connect (source types, their credential fields) and what a source holds (tables)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from census_mcp.census.cache import Fetched
from census_mcp.census.models import ConfigurationField, Listing, SourceType, Table
from census_mcp.summaries.text import Paged, PageRequest, freshness, page_of, paging_lines
from census_mcp.untrusted import clean, quote

_SCHEMAS_SHOWN = 20


# Source types


class SourceTypeItem(BaseModel):
    service_name: str = Field(description="The type to pass to create_source.")
    label: str
    creatable_via_api: bool | None


class SourceTypeList(Paged):
    creatable_via_api: int = Field(description="How many of all types create_source can create.")
    types: list[SourceTypeItem]


def summarize_source_types(
    fetched: Fetched[Listing[SourceType]], *, request: PageRequest
) -> tuple[str, SourceTypeList]:
    types = fetched.value.items
    creatable = sum(bool(t.creatable_via_api) for t in types)

    def render(source_type: SourceType) -> tuple[SourceTypeItem, str]:
        item = SourceTypeItem(
            service_name=source_type.service_name,
            label=clean(source_type.label or source_type.service_name),
            creatable_via_api=source_type.creatable_via_api,
        )
        absent = "" if item.creatable_via_api else " (not creatable via API)"
        return item, f"- {item.service_name}: {quote(item.label)}{absent}"

    def build(
        rows: Sequence[tuple[SourceTypeItem, str]], paging: dict[str, Any], cut: bool
    ) -> tuple[str, SourceTypeList]:
        result = SourceTypeList(**paging, creatable_via_api=creatable, types=[item for item, _ in rows])
        lines = [f"{len(types)} source types; {creatable} can be created through the API (create_source)."]
        lines.extend(line for _, line in rows)
        lines.extend(paging_lines(result, len(rows), "types", cut=cut))
        lines.append(f"get_source_type(type) gives the credentials each needs. {freshness(fetched)}")
        return "\n".join(lines), result

    return page_of(
        types,
        fetched=fetched,
        request=request,
        render=render,
        build=build,
    )


class CredentialField(BaseModel):
    id: str = Field(description="The key to use in create_source's credentials.")
    label: str
    type: str | None
    required: bool
    secret: bool
    possible_values: list[Any] | None
    applies_when: str | None = Field(description="null: always applies.")
    hint: str | None


class SourceTypeDetail(BaseModel):
    service_name: str
    label: str
    creatable_via_api: bool | None
    fields: list[CredentialField]
    example_credentials: dict[str, Any] = Field(
        description="Required fields that always apply, as placeholders."
    )


def source_type_detail(source_type: SourceType) -> SourceTypeDetail:
    fields = source_type.configuration_fields.fields if source_type.configuration_fields else []
    items = [_credential_field(field) for field in fields]
    return SourceTypeDetail(
        service_name=source_type.service_name,
        label=clean(source_type.label or source_type.service_name),
        creatable_via_api=source_type.creatable_via_api,
        fields=items,
        example_credentials={
            item.id: _placeholder(field, item)
            for field, item in zip(fields, items, strict=True)
            # A field shown only "if" a toggle is on is off by default; one shown "unless" applies.
            if item.required and not (field.show or {}).get("if")
        },
    )


def _credential_field(field: ConfigurationField) -> CredentialField:
    values = field.possible_values
    return CredentialField(
        id=field.id,
        label=clean(field.label or field.id),
        type=field.type,
        required=field.required,
        secret=field.is_password_type_field,
        possible_values=None if not values else [clean(str(v), 60) for v in values[:50]],
        applies_when=_applies_when(field.show),
        hint=clean(field.hint, 200) if field.hint else None,
    )


def _placeholder(field: ConfigurationField, item: CredentialField) -> Any:
    if item.secret:
        return f"<{item.id}>"
    if item.possible_values:
        return item.possible_values[0]
    if field.type == "boolean":
        return False
    return clean(field.placeholder, 60) if field.placeholder else f"<{item.id}>"


def _applies_when(show: dict[str, Any] | None) -> str | None:
    """Census's show conditions ({if: {field: value}} / {unless: ...}) as a readable rule."""
    if not show:
        return None
    parts: list[str] = []
    for verb, joiner in (("if", "is"), ("unless", "is not")):
        conditions = show.get(verb)
        if isinstance(conditions, dict):
            parts.extend(f"{key} {joiner} {json.dumps(value)}" for key, value in conditions.items())
    return clean(" and ".join(parts) or json.dumps(show), 200)


def source_type_text(detail: SourceTypeDetail) -> str:
    lines = [f"Source type {detail.service_name} ({quote(detail.label)})."]
    if detail.creatable_via_api is False:
        lines.append("It cannot be created through the API: connect it in the Census app.")
    lines.append(f"Credential fields ({len(detail.fields)}):")
    for field in detail.fields:
        traits = ["required" if field.required else "optional"] + (["secret"] if field.secret else [])
        if field.applies_when:
            traits.append(f"only when {field.applies_when}")
        if field.possible_values:
            traits.append("one of " + ", ".join(quote(v, 30) for v in field.possible_values[:10]))
        lines.append(f"- {field.id} ({field.type or 'string'}; {'; '.join(traits)}): {quote(field.label)}")
    if detail.creatable_via_api is not False:
        example = json.dumps({"type": detail.service_name, "credentials": detail.example_credentials})
        lines.append(f"Call create_source with, filling in real values: {example}")
    return "\n".join(lines)


# Tables


class TableItem(BaseModel):
    table_schema: str | None
    table_name: str


class TableList(Paged):
    source_id: int
    by_schema: dict[str, int] = Field(description="Matching tables per schema (the largest schemas).")
    tables: list[TableItem]


def summarize_tables(
    fetched: Fetched[Listing[Table]],
    *,
    source_id: int,
    search: str | None,
    request: PageRequest,
) -> tuple[str, TableList]:
    tables = fetched.value.items
    by_schema = dict(Counter(t.table_schema or "" for t in tables).most_common(_SCHEMAS_SHOWN))

    def render(table: Table) -> tuple[TableItem, str]:
        qualified = f"{table.table_schema}.{table.table_name}" if table.table_schema else table.table_name
        return TableItem(
            table_schema=table.table_schema, table_name=table.table_name
        ), f"- {quote(qualified)}"

    def build(
        rows: Sequence[tuple[TableItem, str]], paging: dict[str, Any], cut: bool
    ) -> tuple[str, TableList]:
        result = TableList(
            **paging, source_id=source_id, by_schema=by_schema, tables=[item for item, _ in rows]
        )
        matching = f" matching {quote(search)}" if search else ""
        schemas = ", ".join(f"{quote(name or '(none)', 40)} {n}" for name, n in by_schema.items())
        more_schemas = " …" if len(by_schema) == _SCHEMAS_SHOWN else ""
        lines = [
            f"Source #{source_id} has {len(tables)} tables{matching}. "
            f"By schema: {schemas or 'none'}{more_schemas}."
        ]
        lines.extend(line for _, line in rows)
        lines.extend(paging_lines(result, len(rows), "tables", cut=cut))
        if not tables and not search:
            lines.append(f"No tables loaded yet: refresh_source_tables(source_id={source_id}) reads them.")
        lines.append(freshness(fetched))
        return "\n".join(lines), result

    return page_of(
        tables,
        fetched=fetched,
        request=request,
        render=render,
        build=build,
    )
