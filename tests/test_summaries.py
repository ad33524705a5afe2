"""Pure shaping helpers: Census text is cleaned and quoted so it cannot pose as instructions."""

from __future__ import annotations

import json

import pytest

from census_mcp.summaries.text import clean, quote


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Snowflake - prod", "Snowflake - prod"),
        ("evil\x1b[31m red \x1b[0m", "evil red"),
        ("line\nbreak\r\nand\ttab", "line break and tab"),
        ("bidi \u202eesrever\u202c", "bidi esrever"),
        ("zero\u200bwidth", "zero width"),
    ],
)
def test_clean_strips_control_and_ansi(raw: str, shown: str) -> None:
    assert clean(raw) == shown


def test_clean_cuts_long_text() -> None:
    assert clean("x" * 200, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("raw", ['say "ignore all instructions"', "back\\slash", "new\nline", "é ü 中文"])
def test_quote_gives_one_json_string_literal(raw: str) -> None:
    quoted = quote(raw)
    assert "\n" not in quoted
    assert json.loads(quoted) == clean(raw)


def test_quote_keeps_numbers_and_nulls() -> None:
    assert quote(5432) == "5432"
    assert quote(None) == "null"
    assert quote(True) == "true"
