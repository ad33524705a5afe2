"""Sources: the list page with its counts, the detail of one source, a deletion."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from census_mcp.census.cache import Fetched
from census_mcp.census.models import Listing, Source
from census_mcp.redaction import mask_secrets
from census_mcp.summaries.text import Paged, PageRequest, freshness, page_of, paging_lines, result_size
from census_mcp.untrusted import clean, quote

_VALUE_CHARS = 60
_STATUS_WORDS = {True: "passed", False: "FAILED", None: "untested"}
_FIRST_NAMES = 8
_KINDS_SHOWN = 10
_GROUP_CHARS = 64


def _absent_when_none(value: Any) -> bool:
    """API v1 has no groups: there the group fields are left out, so v1 results stay as they were."""
    return value is None


@dataclass(frozen=True)
class SourceFilter:
    """Which sources list_sources selects; None means any."""

    type: str | None = None
    name_contains: str | None = None
    test_status: str | None = None
    group_id: str | None = None

    def matches(self, source: Source) -> bool:
        if self.type is not None and source.type != self.type:
            return False
        if self.group_id is not None and source.group_id != self.group_id:
            return False
        if self.test_status is not None and source.test_status != self.test_status:
            return False
        if self.name_contains:
            needle = self.name_contains.casefold()
            return needle in source.name.casefold() or needle in (source.label or "").casefold()
        return True

    def describe(self) -> str:
        parts = [
            f"type={self.type}" if self.type else "",
            f"group {self.group_id}" if self.group_id else "",
            f"name contains {quote(self.name_contains)}" if self.name_contains else "",
            f"last test {self.test_status}" if self.test_status else "",
        ]
        shown = ", ".join(part for part in parts if part)
        return f" ({shown})" if shown else ""


class SourceItem(BaseModel):
    id: int
    name: str = Field(description="Cut to 80 characters.")
    label: str | None
    type: str
    last_test_succeeded: bool | None = Field(description="null: never tested.")
    last_tested_at: str | None
    group_id: str | SkipJsonSchema[None] = Field(default=None, exclude_if=_absent_when_none)


class TestStatusCounts(BaseModel):
    passed: int = 0
    failed: int = 0
    untested: int = 0


class SourceCounts(BaseModel):
    by_type: dict[str, int]
    by_test_status: TestStatusCounts
    by_group: dict[str, int] | SkipJsonSchema[None] = Field(default=None, exclude_if=_absent_when_none)


class SourceList(Paged):
    workspace_total: int = Field(description="Sources in the whole workspace.")
    counts: SourceCounts = Field(description="Over all matches, not just this page.")
    sources: list[SourceItem]


SortColumn = Literal["name", "type", "test_status", "last_tested_at"]
# Ascending puts failures first: they are what a reader sorts by status to find.
_STATUS_RANK = {"failed": 0, "untested": 1, "passed": 2}


def sort_sources(sources: Sequence[Source], column: SortColumn, *, descending: bool) -> list[Source]:
    """`sources` sorted by a column, ties by name; sources never tested come last either way
    when sorted by test time."""
    if column == "last_tested_at":
        tested = sorted((s for s in sources if s.last_tested_at), key=_tested_at, reverse=descending)
        return tested + sorted((s for s in sources if not s.last_tested_at), key=_name_key)
    keys: dict[str, Callable[[Source], Any]] = {
        "name": _name_key,
        "type": lambda source: (source.type, _name_key(source)),
        "test_status": lambda source: (_STATUS_RANK[source.test_status], _name_key(source)),
    }
    return sorted(sources, key=keys[column], reverse=descending)


def _name_key(source: Source) -> tuple[str, int]:
    return source.name.casefold(), source.id


def _tested_at(source: Source) -> str:
    return source.last_tested_at or ""


def summarize_source_list(
    matching: Sequence[Source],
    *,
    fetched: Fetched[Listing[Source]],
    request: PageRequest,
    selection: SourceFilter,
    grouped: bool,
) -> tuple[str, SourceList]:
    """Totals and counts over every match, then one page of compact rows within the budget.
    `grouped`: sources belong to groups (API v2), so counts by group are given even when none match."""
    groups = Counter(group for source in matching if (group := _group(source)) is not None)
    counts = SourceCounts(
        by_type=dict(Counter(source.type for source in matching).most_common()),
        by_test_status=TestStatusCounts(**Counter(source.test_status for source in matching)),
        by_group=dict(groups.most_common()) if groups or grouped else None,
    )

    def render(source: Source) -> tuple[SourceItem, str]:
        item = SourceItem(
            id=source.id,
            name=clean(source.name),
            label=None if source.label is None else clean(source.label),
            type=source.type,
            last_test_succeeded=source.last_test_succeeded,
            last_tested_at=source.last_tested_at,
            group_id=_group(source),
        )
        return item, _source_line(item, selection)

    def build(
        rows: Sequence[tuple[SourceItem, str]], paging: dict[str, Any], cut: bool
    ) -> tuple[str, SourceList]:
        result = SourceList(
            **paging,
            workspace_total=fetched.value.total,
            counts=counts,
            sources=[item for item, _ in rows],
        )
        return _list_text(result, _grouped_lines(rows), selection, fetched, cut=cut), result

    return page_of(
        matching,
        fetched=fetched,
        request=request,
        render=render,
        build=build,
    )


def _list_text(
    result: SourceList, rows: list[str], selection: SourceFilter, fetched: Fetched[Any], *, cut: bool
) -> str:
    status = result.counts.by_test_status
    types = _counts(result.counts.by_type) or "none"
    by_group = result.counts.by_group
    groups = "" if by_group is None else " Groups: " + (_counts(by_group) or "none") + "."
    lines = [
        f"{result.total} of {result.workspace_total} sources match{selection.describe()}. "
        f"Last test: {status.failed} failed, {status.passed} passed, {status.untested} untested. "
        f"Types: {types}.{groups}"
    ]
    if result.sources:
        lines.append(f"Showing {result.offset + 1}-{result.offset + len(result.sources)}:")
        lines.extend(rows)
    else:
        lines.extend(_absent_value_hints(selection, fetched.value.items))
    lines.extend(paging_lines(result, len(result.sources), "sources", cut=cut))
    lines.append(freshness(fetched))
    return "\n".join(lines)


def _absent_value_hints(selection: SourceFilter, sources: Sequence[Source]) -> list[str]:
    """When nothing matches, for a type or group asked for that no source has, the ones the
    workspace does have: a misspelt or absent value should not read like a clean bill of health."""
    asked = (("type", selection.type, "type"), ("group", selection.group_id, "group_id"))
    hints = []
    for what, wanted, field in asked:
        if wanted is None:
            continue
        present = Counter(value for source in sources if (value := getattr(source, field)) is not None)
        if wanted not in present:
            known = ", ".join(clean(value, 40) for value, _ in present.most_common(_KINDS_SHOWN)) or "none"
            hints.append(
                f"No source in the workspace has {what} {clean(wanted, 40)}; the {what}s it has: {known}."
            )
    return hints


def _grouped_lines(rows: Sequence[tuple[SourceItem, str]]) -> list[str]:
    """The rows' lines; on API v2, under a line per group, in the order the groups first appear, so
    that a group is written once per page instead of once per row."""
    groups: dict[str | None, list[str]] = {}
    for item, line in rows:
        groups.setdefault(item.group_id, []).append(line)
    if list(groups) == [None]:
        return groups[None]
    return [text for group, lines in groups.items() for text in (f"In group {quote(group)}:", *lines)]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _group(source: Source) -> str | None:
    return None if source.group_id is None else clean(source.group_id, _GROUP_CHARS)


def _source_line(item: SourceItem, selection: SourceFilter) -> str:
    """One row; columns that the filter already fixes (type, test status) are left out, and the group
    heads the rows of its group."""
    label = f" label {quote(item.label)}" if item.label and item.label != item.name else ""
    kind = "" if selection.type else f" [{item.type}]"
    status = "" if selection.test_status else " " + _STATUS_WORDS[item.last_test_succeeded]
    tested = f" tested {_minute(item.last_tested_at)}" if item.last_tested_at else ""
    return f"- #{item.id} {quote(item.name)}{label}{kind}{status}{tested}"


def _minute(timestamp: str) -> str:
    """An ISO timestamp to the minute, e.g. 2025-02-03T14:02Z, which is all a summary needs."""
    return f"{timestamp[:16]}Z" if len(timestamp) >= 16 and timestamp[10] == "T" else clean(timestamp, 40)


# One source


class DataSourcesSummary(BaseModel):
    total: int = Field(description="Models and tables on this source.")
    by_kind: dict[str, int] = Field(description="e.g. {table: 120, model: 3}")
    first: dict[str, list[str]] = Field(description="The first names of each kind.")


class SourceDetail(BaseModel):
    """A source under the API's own field names, secrets masked, data_sources summarized."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    label: str | None = None
    type: str
    group_id: str | SkipJsonSchema[None] = Field(default=None, exclude_if=_absent_when_none)
    last_test_succeeded: bool | None = None
    last_tested_at: str | None = None
    connection_details: dict[str, Any] = Field(default_factory=dict, description="Secrets masked.")
    read_only_connection: bool | None = None
    data_sources: DataSourcesSummary | None = Field(
        default=None, description="Models and tables, summarized."
    )


# Each pass shortens text values and cuts nested collections further, until the result fits.
_DETAIL_LIMITS = ((1000, 100), (200, 30), (60, 10), (20, 3))


def describe_source(source: Source, headline: str, budget_bytes: int) -> tuple[str, SourceDetail]:
    """A source's text and detail within the budget: however long its values, or however many
    its connection fields, a write that succeeded must never come back as too large to show."""
    raw = mask_secrets(source.model_dump(mode="json", exclude={"data_sources"}))
    summary = None if source.data_sources is None else summarize_data_sources(source.data_sources)
    for chars, items in _DETAIL_LIMITS:
        fields = {key: _bounded(value, chars, items) for key, value in raw.items()}
        detail = SourceDetail.model_validate({**fields, "data_sources": summary})
        text = source_text(detail, headline)
        if result_size(text, detail) <= budget_bytes:
            break
    return text, detail


def _bounded(value: Any, chars: int, items: int) -> Any:
    """`value` with text cut to `chars` and collections to `items` entries, saying what was left out."""
    if isinstance(value, str):
        return clean(value, chars)
    if isinstance(value, list):
        return [_bounded(item, chars, items) for item in value[:items]]
    if isinstance(value, dict):
        kept = {
            clean(str(key), 60): _bounded(item, chars, items) for key, item in list(value.items())[:items]
        }
        if len(value) > items:
            kept["…"] = f"{len(value) - items} more fields not shown"
        return kept
    return value


def summarize_data_sources(items: Sequence[Any]) -> DataSourcesSummary:
    """Counts per kind over all items; names only for the first few of each (a source may have
    thousands, so the per-item work is kept to reading its kind)."""
    kinds: Counter[str] = Counter(_kind(item) for item in items)
    shown = [kind for kind, _ in kinds.most_common(_KINDS_SHOWN)]
    first: dict[str, list[str]] = {kind: [] for kind in shown}
    for item in items:
        names = first.get(_kind(item))
        if names is not None and len(names) < _FIRST_NAMES:
            names.append(clean(_name(item)))
            if all(len(names) >= min(_FIRST_NAMES, kinds[kind]) for kind, names in first.items()):
                break
    by_kind = {clean(kind, 40): kinds[kind] for kind in shown}
    return DataSourcesSummary(
        total=len(items), by_kind=by_kind, first={clean(kind, 40): names for kind, names in first.items()}
    )


def _kind(item: Any) -> str:
    """Census's data_sources entries vary; the kind comes from whichever common field is there."""
    if not isinstance(item, dict):
        return "item"
    return str(item.get("type") or item.get("kind") or item.get("object") or "item")


def _name(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    name = item.get("name") or ".".join(
        str(item[key]) for key in ("table_schema", "table_name") if item.get(key)
    )
    return str(name or item.get("id", "?"))


def source_text(detail: SourceDetail, headline: str = "Source") -> str:
    group = f" in group {quote(detail.group_id)}" if detail.group_id else ""
    lines = [f"{headline} #{detail.id} {quote(detail.name)} [{detail.type}]{group}" + _label_part(detail)]
    lines.append("Last connection test: " + _test_part(detail))
    details = ", ".join(
        f"{clean(key, 40)}={quote(value, _VALUE_CHARS)}" for key, value in detail.connection_details.items()
    )
    lines.append(f"Connection details: {details or 'none returned'}")
    if detail.read_only_connection is not None:
        lines.append(f"Read-only connection: {'yes' if detail.read_only_connection else 'no'}")
    if detail.data_sources is not None:
        lines.append(_data_sources_part(detail.data_sources, detail.id))
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


def _data_sources_part(summary: DataSourcesSummary, source_id: int) -> str:
    counts = ", ".join(f"{n} {kind}s" for kind, n in summary.by_kind.items()) or "none"
    parts = [f"Models and tables: {counts}."]
    for kind, names in summary.first.items():
        more = " …" if summary.by_kind.get(kind, 0) > len(names) else ""
        parts.append(f"First {kind}s: {', '.join(quote(name) for name in names)}{more}")
    if summary.by_kind.get("table", 0) > len(summary.first.get("table", [])):
        parts.append(f"list_source_tables(source_id={source_id}) pages through and searches the tables.")
    return "\n".join(parts)


class DeletedSource(BaseModel):
    deleted: bool
    id: int
    name: str
