"""What every summary shares: sizes, budgets and paging."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from census_mcp.census.cache import Fetched

DEFAULT_LIMIT = 25
DEFAULT_PAGE_BYTES = 8192

_R = TypeVar("_R", bound=BaseModel)
_T = TypeVar("_T")
_I = TypeVar("_I", bound=BaseModel)


def result_size(text: str, structured: BaseModel | dict[str, Any] | None) -> int:
    """Bytes a result costs on the wire: its text plus its structured content as compact JSON."""
    data = structured.model_dump(mode="json") if isinstance(structured, BaseModel) else structured
    return len(text.encode()) + len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list a call asked for, and the bytes its result may spend."""

    offset: int
    limit: int
    budget_bytes: int

    @classmethod
    def within(cls, *, offset: int, limit: int, cap_bytes: int) -> PageRequest:
        """About 8 KB per 25 items asked for, never more than the cap."""
        budget = min(cap_bytes, max(DEFAULT_PAGE_BYTES, limit * DEFAULT_PAGE_BYTES // DEFAULT_LIMIT))
        return cls(offset=offset, limit=limit, budget_bytes=budget)


Row = tuple[BaseModel, str]
"""One list item, rendered once: its structured form and its line of text."""


def row_bytes(row: Row) -> int:
    """What a row adds to a result: its JSON and its line, each with a separator."""
    item, line = row
    return len(item.model_dump_json()) + len(line.encode()) + 2


def fit_to_budget(
    build: Callable[[int], tuple[str, _R]], rows: Sequence[Row], budget_bytes: int
) -> tuple[str, _R]:
    """The largest prefix of `rows` whose result fits the budget (at least the empty one).

    A page that fits is built once. One that does not drops rows from the end until their
    bytes cover the excess, then is checked again; the rest of the text barely changes with
    the count, so that takes one or two more builds, not one per row.
    """
    shown = len(rows)
    text, result = build(shown)
    excess = result_size(text, result) - budget_bytes
    while excess > 0 and shown > 0:
        while excess > 0 and shown > 0:
            shown -= 1
            excess -= row_bytes(rows[shown])
        text, result = build(shown)
        excess = result_size(text, result) - budget_bytes
    return text, result


class Paged(BaseModel):
    """The paging fields every list result carries."""

    total: int = Field(description="Items that match.")
    offset: int
    next_offset: int | None = Field(description="Pass as offset for the next page; null when none remain.")
    fetched_at: str = Field(description="When this list was read from Census (UTC).")


def page_of(
    matching: Sequence[_T],
    *,
    fetched: Fetched[Any],
    request: PageRequest,
    render: Callable[[_T], tuple[_I, str]],
    build: Callable[[Sequence[tuple[_I, str]], dict[str, Any], bool], tuple[str, _R]],
) -> tuple[str, _R]:
    """One page of `matching`: each item rendered once, then framed by `build(rows, paging, cut)`,
    where `paging` holds the Paged fields. A page that would cross the budget is cut at a whole
    item (cut=True), and next_offset resumes after it."""
    offset = request.offset
    window = [render(item) for item in matching[offset : offset + request.limit]]

    def attempt(shown: int) -> tuple[str, _R]:
        end = offset + shown
        paging = {
            "total": len(matching),
            "offset": offset,
            "next_offset": end if end < len(matching) else None,
            "fetched_at": fetched_at(fetched),
        }
        return build(window[:shown], paging, shown < len(window))

    return fit_to_budget(attempt, window, request.budget_bytes)


def paging_lines(page: Paged, shown: int, noun: str, *, cut: bool) -> list[str]:
    """The lines that close a list: where this page sits, how to get the rest, how fresh it is."""
    lines = []
    if not shown and page.total:
        lines.append(f"No {noun} at offset {page.offset}; the last is at offset {page.total - 1}.")
    if page.next_offset is not None:
        why = "The result size cap cut this page. " if cut else ""
        lines.append(f"{why}{page.total - page.next_offset} more: call again with offset={page.next_offset}.")
    return lines


def fetched_at(fetched: Fetched[Any]) -> str:
    return fetched.fetched_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def freshness(fetched: Fetched[Any]) -> str:
    """How fresh a list is, and how to get a fresher one."""
    origin = fetched.origin or "Census"
    if not fetched.from_cache:
        return f"Read from {origin} at {fetched_at(fetched)}."
    age = max(0, round((datetime.now(UTC) - fetched.fetched_at).total_seconds()))
    return f"From a list read {age}s ago, at {fetched_at(fetched)}; pass refresh=true to read {origin} again."
