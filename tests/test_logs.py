"""The server's log: each line bounded in length, and a warning a caller can trigger said once a
minute with a count of the repeats held back, so that no caller can flood the log."""

from __future__ import annotations

import logging
import re

import pytest

from census_mcp.logs import RepeatFilter
from census_mcp.settings import Settings
from tests.helpers import server_logging

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_a_log_line_is_cut_at_2000_characters(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("tests.logs.long")
    with server_logging(Settings(sandbox=True, log_level="INFO")):
        logger.info("tool name %s", "n" * 5000)
        logger.info("short line")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    said = lines[0].split(": ", 1)[1]
    assert said == "tool name " + "n" * 1990 + "… [3010 characters cut]"
    assert re.fullmatch(rf"{WHEN} INFO tests\.logs\.long: short line", lines[1])


def test_the_server_says_a_repeated_warning_once(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("tests.logs.repeated")
    with server_logging(Settings(sandbox=True, log_level="INFO")):
        for n in range(50):
            logger.warning("A client sent a malformed request (%d)", n)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("A client sent a malformed request (0)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _said(
    kept: RepeatFilter, message: str, level: int = logging.WARNING, name: str = "tests.logs"
) -> str | None:
    """What the filter lets through of one record: its message, or None when held back."""
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    return record.getMessage() if kept.filter(record) else None


def test_a_warning_is_said_once_a_minute_then_with_the_count_held_back() -> None:
    clock = Clock()
    kept = RepeatFilter(clock)
    assert _said(kept, "Census is slow") == "Census is slow"
    clock.now += 59.9
    assert [_said(kept, "Census is slow") for _ in range(3)] == [None] * 3
    clock.now += 0.1  # a minute after it was said
    assert _said(kept, "Census is slow") == "Census is slow (3 more like it in the last minute)"
    clock.now += 60
    # Nothing was held back in the minute since: no count.
    assert _said(kept, "Census is slow") == "Census is slow"


def test_each_kind_of_warning_has_its_own_window() -> None:
    """A kind is the logger, the level and the message template."""
    kept = RepeatFilter(Clock())
    first = [
        _said(kept, "Census is slow"),
        _said(kept, "Redis is away"),
        _said(kept, "Census is slow", name="tests.other"),
        _said(kept, "Census is slow", level=logging.ERROR),
    ]
    assert None not in first
    assert _said(kept, "Census is slow") is None
    assert _said(kept, "Redis is away") is None
    assert _said(kept, "Census is slow", level=logging.ERROR) is None


def test_info_and_debug_lines_are_never_held_back() -> None:
    kept = RepeatFilter(Clock())
    for level in (logging.DEBUG, logging.INFO):
        assert [_said(kept, "Retrying", level) for _ in range(3)] == ["Retrying"] * 3


def test_the_kinds_tracked_are_bounded_at_a_thousand() -> None:
    """A caller who makes ever-new warnings costs a bounded memory: at a thousand kinds the tracking
    starts over, so a kind seen before may be said again early, never more than once per kind."""
    kept = RepeatFilter(Clock())
    for n in range(1000):
        assert _said(kept, f"kind {n}") == f"kind {n}"
    assert _said(kept, "kind 0") is None  # a thousand kinds are still tracked
    assert _said(kept, "kind 1000") == "kind 1000"  # the thousand-and-first starts over
    assert _said(kept, "kind 0") == "kind 0"
    assert _said(kept, "kind 0") is None


def test_log_lines_escape_what_could_forge_or_hide_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    # What a caller controls (a path, a tool name, a value) may reach a log line through the SDK or
    # a library: a line break forges a line, ESC recolours or erases one, U+202E reverses one.
    forged = "/mcp\n2026-12-01 00:00:00,000 ERROR census_mcp.http: forged\x1b[2K\u202eenil"
    logger = logging.getLogger("tests.logs.forged")
    with server_logging(Settings(sandbox=True, log_level="INFO")):
        logger.warning("Refused %s", forged)
        try:
            raise ValueError(f"bad name {forged}")
        except ValueError:
            logger.exception("Tool crashed")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith(
        r"WARNING tests.logs.forged: Refused /mcp\n2026-12-01 00:00:00,000 ERROR "
        r"census_mcp.http: forged\x1b[2K\u202eenil"
    ), lines[0]
    assert lines[1].endswith("ERROR tests.logs.forged: Tool crashed")
    assert lines[2] == "Traceback (most recent call last):"
    assert not any(line.startswith("2026-12-01 00:00:00") for line in lines)
    assert lines[-1].startswith("ValueError: bad name /mcp\\n2026-12-01"), lines[-1]
    for line in lines:
        assert line.isprintable(), line


def test_log_lines_escape_only_what_could_forge_or_hide_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A name in any script stays legible next to the escapes: only the unprintable is escaped."""
    logger = logging.getLogger("tests.logs.legible")
    with server_logging(Settings(sandbox=True, log_level="INFO")):
        logger.warning("Refused %s", "Zürich, 東京\nforged")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(r"WARNING tests.logs.legible: Refused Zürich, 東京\nforged"), line
