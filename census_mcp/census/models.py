"""Pydantic models of the Census API objects this server reads.

Census adds fields over time, so every model keeps unknown fields (extra="allow")
instead of failing on them; only the fields the server reasons about are typed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CensusObject(BaseModel):
    model_config = ConfigDict(extra="allow")


class Pagination(CensusObject):
    total_records: int = Field(ge=0)
    per_page: int = Field(ge=1)
    page: int = Field(ge=1)
    last_page: int = Field(ge=0)
    prev_page: int | None = None
    next_page: int | None = None


class Page(CensusObject):
    """One page of a list endpoint: `{status, data: [...], pagination}`."""

    data: list[dict[str, Any]]
    pagination: Pagination


class Source(CensusObject):
    id: int
    name: str = ""
    label: str | None = None
    type: str = ""
    last_test_succeeded: bool | None = None
    last_tested_at: str | None = None
    created_at: str | None = None
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
