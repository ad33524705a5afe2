"""Pydantic models of the Census API objects this server reads.

Census adds fields over time, so every model keeps unknown fields (extra="allow")
instead of failing on them; only the fields the server reasons about are typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from census_mcp.census.api import V2


class CensusObject(BaseModel):
    model_config = ConfigDict(extra="allow")


_M = TypeVar("_M", bound=BaseModel)
# Parsed rows take about 4 to 7 times the bytes of the JSON they came from (measured with tracemalloc
# on the sandbox's sources, tables and source types): what the list cache counts against its budget.
PARSED_BYTES_PER_JSON_BYTE = 6


@dataclass(frozen=True)
class Listing(Generic[_M]):
    """All rows of a list endpoint, parsed, and the total Census reported."""

    items: list[_M]
    total: int
    json_bytes: int
    """The bytes of the pages the rows were parsed from."""

    @property
    def size_bytes(self) -> int:
        """About what the parsed rows take in memory."""
        return self.json_bytes * PARSED_BYTES_PER_JSON_BYTE


class Pagination(CensusObject):
    total_records: int = Field(ge=0)
    per_page: int = Field(ge=1)
    page: int = Field(ge=1)
    last_page: int = Field(ge=0)
    prev_page: int | None = None
    next_page: int | None = None


class Page(CensusObject, Generic[_M]):
    """One page of a list endpoint, `{status, data: [...], pagination}`, its rows parsed as _M."""

    data: list[_M]
    pagination: Pagination


class Source(CensusObject):
    id: int
    name: str = ""
    label: str | None = None
    type: str = ""
    last_test_succeeded: bool | None = None
    last_tested_at: str | None = None
    created_at: str | None = None
    group_id: str | None = Field(default=None, validation_alias=V2.group_field)
    """The Fivetran group the source belongs to (API v2); None on v1."""
    connection_details: dict[str, Any] = Field(default_factory=dict)
    read_only_connection: bool | None = None
    data_sources: list[Any] | None = None

    @property
    def test_status(self) -> str:
        """passed, failed or untested: the three states a last connection test can be in."""
        if self.last_test_succeeded is None:
            return "untested"
        return "passed" if self.last_test_succeeded else "failed"


class RefreshJob(CensusObject):
    refresh_key: int


class RefreshStatus(CensusObject):
    status: str


class ConfigurationField(CensusObject):
    """One credential field a source type asks for."""

    id: str
    label: str | None = None
    type: str | None = None
    rules: str | list[str] | None = None
    is_password_type_field: bool = False
    possible_values: list[Any] | None = None
    hint: str | None = None
    placeholder: str | None = None
    show: dict[str, Any] | None = None

    @property
    def required(self) -> bool:
        rules = [self.rules] if isinstance(self.rules, str) else (self.rules or [])
        return "required" in rules


class ConfigurationFields(CensusObject):
    fields: list[ConfigurationField] = Field(default_factory=list)


class SourceType(CensusObject):
    service_name: str
    label: str | None = None
    creatable_via_api: bool | None = None
    configuration_fields: ConfigurationFields | None = None


class Table(CensusObject):
    table_catalog: str | None = None
    table_schema: str | None = None
    table_name: str
    last_refreshed_at: str | None = None
