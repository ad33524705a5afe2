"""Text that comes from Census (names, labels, messages) is data, never instructions.

It is cleaned of control and ANSI characters, shortened and quoted before it reaches a
result or an error, so it can neither break the layout nor pose as an instruction.
"""

from __future__ import annotations

import json
import re
from typing import Any

NAME_CHARS = 80

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _visible(char: str) -> str:
    # Not printable: controls, and the invisible format characters (bidi overrides, zero-width
    # and word joiners, byte-order marks, Unicode tags) that can hide text from a reader.
    return char if char.isprintable() else " "


def clean(text: str, limit: int = NAME_CHARS) -> str:
    """`text` without control or ANSI sequences, cut to `limit` characters."""
    if len(text) <= limit and text.isprintable():
        return text  # the common case, kept fast: lists clean every name
    flat = " ".join("".join(map(_visible, _ANSI.sub(" ", text))).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def escaped(text: str) -> str:
    """`text` with each character clean() would drop written as a visible escape (`\\n`, `\\x1b`,
    `\\u202e`): for log lines, where what a caller sent should stay legible but must neither forge a
    line nor hide or recolour one."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text
    )


def quote(value: Any, limit: int = NAME_CHARS) -> str:
    """A value from Census as a quoted, escaped literal for text results."""
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    # clean() leaves no control characters, so only the quote and the backslash need escaping.
    return '"' + clean(text, limit).replace("\\", "\\\\").replace('"', '\\"') + '"'
