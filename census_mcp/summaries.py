"""Shaping results for a model: a compact text summary plus structured data.

The structured models here are the tools' output schemas. The text is what a model
reads first, so it leads with totals and ends with the next call to make. Text that
comes from Census (names, labels, messages) is data: it is cleaned of control
characters, shortened and quoted, so it can neither break the layout nor pose as
an instruction.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from census_mcp.census.models import Source
from census_mcp.redaction import mask_secrets

TestStatus = Literal["passed", "failed", "untested"]

_CONTROL = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]"
)
NAME_CHARS = 80
_VALUE_CHARS = 60
_FIRST_NAMES = 8
DEFAULT_LIMIT = 25
DEFAULT_PAGE_BYTES = 8192
MAX_RESULT_BYTES = 24 * 1024
_R = TypeVar("_R", bound=BaseModel)


def clean(text: str, limit: int = NAME_CHARS) -> str:
    """`text` without control or ANSI sequences, cut to `limit` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def quote(value: Any, limit: int = NAME_CHARS) -> str:
    """A value from Census as a quoted, escaped literal for text results."""
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(clean(text, limit), ensure_ascii=False)


def result_size(text: str, structured: BaseModel | dict[str, Any]) -> int:
    """Bytes a result costs on the wire: its text plus its structured content as compact JSON."""
    data = structured.model_dump(mode="json") if isinstance(structured, BaseModel) else structured
    return len(text.encode()) + len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


# list_sources


class SourceItem(BaseModel):
    id: int
    name: str = Field(description="Source name, cut to 80 characters.")
    label: str | None
    type: str
    last_test_succeeded: bool | None = Field(description="null when the connection was never tested.")
    last_tested_at: str | None


class TestStatusCounts(BaseModel):
    passed: int = 0
    failed: int = 0
    untested: int = 0


class SourceCounts(BaseModel):
    by_type: dict[str, int] = Field(description="Matching sources per source type.")
    by_test_status: TestStatusCounts


class SourceList(BaseModel):
    total: int = Field(description="Sources that match the filters.")
    workspace_total: int = Field(description="Sources in the whole workspace.")
    offset: int
    next_offset: int | None = Field(description="Offset of the next page of matches; null when none remain.")
    counts: SourceCounts = Field(description="Counts over all matching sources, not just this page.")
    sources: list[SourceItem]


def source_item(source: Source) -> SourceItem:
    return SourceItem(
        id=source.id,
        name=clean(source.name),
        label=None if source.label is None else clean(source.label),
        type=source.type,
        last_test_succeeded=source.last_test_succeeded,
        last_tested_at=source.last_tested_at,
    )


def summarize_source_list(
    matching: Sequence[Source],
    *,
    workspace_total: int,
    offset: int,
    limit: int,
    filters: str,
    budget_bytes: int,
) -> tuple[str, SourceList]:
    """One page of matching sources, cut at a whole item so that text plus data fit the budget."""
    by_status = Counter(source.test_status for source in matching)
    counts = SourceCounts(
        by_type=dict(Counter(source.type for source in matching).most_common()),
        by_test_status=TestStatusCounts(**by_status),
    )
    window = list(matching[offset : offset + limit])

    def build(shown: int) -> tuple[str, SourceList]:
        end = offset + shown
        result = SourceList(
            total=len(matching),
            workspace_total=workspace_total,
            offset=offset,
            next_offset=end if end < len(matching) else None,
            counts=counts,
            sources=[source_item(source) for source in window[:shown]],
        )
        return _source_list_text(result, filters, cut=shown < len(window)), result

    return fit_to_budget(build, len(window), budget_bytes)


def fit_to_budget(build: Callable[[int], tuple[str, _R]], count: int, budget_bytes: int) -> tuple[str, _R]:
    """The largest prefix of `count` items whose result fits the budget (at least the empty one)."""
    shown = count
    text, result = build(shown)
    while shown > 0 and result_size(text, result) > budget_bytes:
        shown -= 1
        text, result = build(shown)
    return text, result


def _source_list_text(result: SourceList, filters: str, *, cut: bool) -> str:
    status = result.counts.by_test_status
    types = ", ".join(f"{name} {n}" for name, n in result.counts.by_type.items()) or "none"
    lines = [
        f"{result.total} of {result.workspace_total} sources match{filters}. "
        f"Last test: {status.failed} failed, {status.passed} passed, {status.untested} untested. "
        f"Types: {types}."
    ]
    if result.sources:
        first = result.offset + 1
        lines.append(f"Showing {first}-{result.offset + len(result.sources)}:")
        lines.extend(_source_line(item) for item in result.sources)
    elif result.total:
        lines.append(f"No sources at offset {result.offset}; the last match is at offset {result.total - 1}.")
    if result.next_offset is not None:
        why = "The result size cap cut this page. " if cut else ""
        lines.append(
            f"{why}{result.total - result.next_offset} more: call again with offset={result.next_offset}."
        )
    return "\n".join(lines)


def _source_line(item: SourceItem) -> str:
    status = {True: "passed", False: "FAILED", None: "untested"}[item.last_test_succeeded]
    tested = f" {item.last_tested_at}" if item.last_tested_at else ""
    label = f" label {quote(item.label)}" if item.label and item.label != item.name else ""
    return f"- #{item.id} {quote(item.name)}{label} [{item.type}] {status}{tested}"


# get_source and the writes that return a source


class DataSourcesSummary(BaseModel):
    total: int = Field(description="Models and tables on this source.")
    by_kind: dict[str, int] = Field(description="Counts per kind, e.g. {table: 120, model: 3}.")
    first: dict[str, list[str]] = Field(description="The first few names of each kind.")


class SourceDetail(BaseModel):
    """A source under the API's own field names, secrets masked, data_sources summarized."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    label: str | None = None
    type: str
    last_test_succeeded: bool | None = None
    last_tested_at: str | None = None
    connection_details: dict[str, Any] = Field(
        default_factory=dict, description="Connection settings; secret values are masked."
    )
    read_only_connection: bool | None = None
    data_sources: DataSourcesSummary | None = Field(
        default=None, description="A summary of the source's models and tables; null when not returned."
    )


def source_detail(source: Source) -> SourceDetail:
    raw = mask_secrets(source.model_dump(mode="json", exclude={"data_sources"}))
    summary = None if source.data_sources is None else summarize_data_sources(source.data_sources)
    return SourceDetail.model_validate({**raw, "data_sources": summary})


def summarize_data_sources(items: Sequence[Any]) -> DataSourcesSummary:
    kinds: Counter[str] = Counter()
    first: dict[str, list[str]] = {}
    for item in items:
        kind, name = _kind_and_name(item)
        kinds[kind] += 1
        names = first.setdefault(kind, [])
        if len(names) < _FIRST_NAMES:
            names.append(clean(name))
    return DataSourcesSummary(total=len(items), by_kind=dict(kinds), first=first)


def _kind_and_name(item: Any) -> tuple[str, str]:
    """Census's data_sources entries vary; read a kind and a name from the common field names."""
    if not isinstance(item, dict):
        return "item", str(item)
    kind = str(item.get("type") or item.get("kind") or item.get("object") or "item")
    name = item.get("name") or ".".join(
        str(item[key]) for key in ("table_schema", "table_name") if item.get(key)
    )
    return kind, str(name or item.get("id", "?"))


def source_text(detail: SourceDetail, headline: str = "Source") -> str:
    lines = [f"{headline} #{detail.id} {quote(detail.name)} [{detail.type}]" + _label_part(detail)]
    lines.append("Last connection test: " + _test_part(detail))
    details = ", ".join(
        f"{clean(key, 40)}={quote(value, _VALUE_CHARS)}" for key, value in detail.connection_details.items()
    )
    lines.append(f"Connection details: {details or 'none returned'}")
    if detail.read_only_connection is not None:
        lines.append(f"Read-only connection: {'yes' if detail.read_only_connection else 'no'}")
    if detail.data_sources is not None:
        lines.append(_data_sources_part(detail.data_sources))
    return "\n".join(lines)


def _label_part(detail: SourceDetail) -> str:
    return f", label {quote(detail.label)}" if detail.label and detail.label != detail.name else ""


def _test_part(detail: SourceDetail) -> str:
    if detail.last_test_succeeded is None:
        return "never run"
    outcome = "passed" if detail.last_test_succeeded else "FAILED"
    failure = _failure_message(getattr(detail, "last_test_results", None))
    return f"{outcome} at {detail.last_tested_at or 'an unknown time'}" + (f": {failure}" if failure else "")


def _failure_message(results: Any) -> str:
    steps = results.get("steps") if isinstance(results, dict) else None
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and step.get("status") == "failed":
            error = step.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            return f"step {quote(step.get('step', '?'), 40)} said {quote(message or 'no message', 200)}"
    return ""


def _data_sources_part(summary: DataSourcesSummary) -> str:
    counts = ", ".join(f"{n} {kind}s" for kind, n in summary.by_kind.items()) or "none"
    parts = [f"Models and tables: {counts}."]
    for kind, names in summary.first.items():
        more = " …" if summary.by_kind[kind] > len(names) else ""
        parts.append(f"First {kind}s: {', '.join(quote(name) for name in names)}{more}")
    return "\n".join(parts)


def list_budget_bytes(limit: int, cap_bytes: int) -> int:
    """A list result may spend about 8 KB per 25 items asked for, never more than the cap."""
    return min(cap_bytes, max(DEFAULT_PAGE_BYTES, limit * DEFAULT_PAGE_BYTES // DEFAULT_LIMIT))


# delete and refresh


class DeletedSource(BaseModel):
    deleted: bool
    id: int
    name: str


class RefreshJobStatus(BaseModel):
    source_id: int
    refresh_key: int = Field(description="Identifies the job; pass it to get_refresh_tables_status.")
    status: str = Field(description="processing or completed.")


def refresh_text(job: RefreshJobStatus, *, started: bool) -> str:
    job_ref = f"source #{job.source_id} (refresh_key {job.refresh_key})"
    arguments = f"source_id={job.source_id}, refresh_key={job.refresh_key}"
    check = f"Check on it with get_refresh_tables_status({arguments})"
    if started:
        return f"Started refreshing the tables of {job_ref}. {check}."
    if job.status == "completed":
        return f"The table refresh of {job_ref} has completed. get_source shows its tables."
    return f"The table refresh of {job_ref} is still {quote(job.status, 20)}. {check} again in a few seconds."
