"""Logging: to stderr (stdout belongs to the protocol), every line scrubbed of secrets, bounded in
length, its control, ANSI and bidi characters escaped, and repeated warnings summed up instead of
flooding the log."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

from census_mcp.redaction import RedactingFilter
from census_mcp.settings import Settings

MAX_LINE_CHARS = 2000
REPEAT_WINDOW_SECONDS = 60.0
_MAX_KINDS_TRACKED = 1000


def configure_logging(config: Settings) -> None:
    """Logs to stderr, each line scrubbed of the tokens and of values under secret keys and cut to a
    bounded length, and each kind of warning said at most once a minute."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    known = config.secrets
    # Repeats first: a record held back costs nothing more.
    handler.addFilter(RepeatFilter())
    handler.addFilter(RedactingFilter(known, max_chars=MAX_LINE_CHARS))
    logging.basicConfig(level=config.log_level, handlers=[handler], force=True)


class RepeatFilter(logging.Filter):
    """A warning of one kind (logger, level and message template) is written once per window; the
    first after the window says how many were held back. A caller who can trigger a warning can
    then add one line a minute to the log, not one per request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._windows: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg)[:200])
        now = self._clock()
        started, held_back = self._windows.get(kind, (float("-inf"), 0))
        if now - started < REPEAT_WINDOW_SECONDS:
            self._windows[kind] = (started, held_back + 1)
            return False
        if len(self._windows) >= _MAX_KINDS_TRACKED:
            self._windows.clear()
        self._windows[kind] = (now, 0)
        if held_back:
            record.msg = f"{record.msg} ({held_back} more like it in the last minute)"
        return True
