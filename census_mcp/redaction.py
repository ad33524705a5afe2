"""Masking secrets before anything reaches a result, an error or a log line.

Two mechanisms, because secrets arrive two ways:
- by key: a value whose key names a secret (password, private_key, ...) is replaced,
  wherever it sits in a nested object;
- by value: known secret strings (the API token, credentials the caller passed in)
  are cut out of free text such as an error message that echoes the request.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from census_mcp.untrusted import escaped

MASK = "[redacted]"

# Fragments of key names that hold secrets, matched against the normalized key.
_SECRET_FRAGMENTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "private_key",
    "privatekey",
    "passphrase",
    "service_account_key",
    "key_file",
    "keyfile",
    "api_key",
    "apikey",
    "access_key",
    "credentials_json",
    "client_key",
    "auth_key",
    "signature",
)
# Secrets shorter than this are not cut out of free text: a 2-letter "password"
# would mangle every message, and is not worth protecting by search.
_MIN_SCRUB_LENGTH = 4


def _normalize(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower())


# Field names are short; a longer key (from a caller's credentials, say) is judged afresh each time,
# so that the cache's size is bounded as well as its count.
_CACHED_KEY_CHARS = 64


def is_secret_key(key: str) -> bool:
    """Whether a field of this name holds a secret, e.g. `password` or `privateKeyPassphrase`."""
    return _is_secret_key_cached(key) if len(key) <= _CACHED_KEY_CHARS else _is_secret_key(key)


def _is_secret_key(key: str) -> bool:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    normalized = _normalize(spaced)
    return normalized.endswith("_key") or any(fragment in normalized for fragment in _SECRET_FRAGMENTS)


_is_secret_key_cached = functools.lru_cache(maxsize=4096)(_is_secret_key)


def mask_secrets(value: Any) -> Any:
    """A copy of `value` with every value under a secret key masked, at any depth.

    Booleans and nulls stay: they carry no secret and tell the model which auth
    method is configured (e.g. `use_keypair: true`).
    """
    if isinstance(value, Mapping):
        return {
            key: MASK if is_secret_key(str(key)) and not _is_harmless(item) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _is_harmless(value: Any) -> bool:
    return value is None or isinstance(value, bool) or value == ""


def secret_values(value: Any) -> Iterator[str]:
    """Every string (and number) under a secret key in `value`, for scrubbing free text."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_key(str(key)) and not _is_harmless(item):
                yield from _leaf_strings(item)
            else:
                yield from secret_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from secret_values(item)


def _leaf_strings(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaf_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaf_strings(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield str(value)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret (and each of its lines, for multi-line keys) replaced by the mask."""
    pieces: set[str] = set()
    for secret in secrets:
        pieces.add(secret)
        pieces.update(line.strip() for line in secret.splitlines())
    # Longest first, so that a secret containing another is removed whole.
    for piece in sorted((p for p in pieces if len(p) >= _MIN_SCRUB_LENGTH), key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text


# `key: "value"`, `'key': 'value'` or `key="value"`, as JSON, reprs and log lines spell them.
# Keys start where a word starts, and keys and values are bounded, so that no text makes the search
# backtrack quadratically.
_QUOTED_PAIR = re.compile(
    r"""(["']?)(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]{1,128})\1(\s*[:=]\s*)(["'])((?:\\.|(?!\4).){0,8192})\4"""
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")


def scrub_pairs(text: str) -> str:
    """`text` with every quoted value under a secret key masked, and bearer tokens masked."""

    def mask_pair(match: re.Match[str]) -> str:
        quote, key, separator, value_quote, _ = match.groups()
        if not is_secret_key(key):
            return match.group(0)
        return f"{quote}{key}{quote}{separator}{value_quote}{MASK}{value_quote}"

    return _BEARER.sub(lambda match: match.group(1) + MASK, _QUOTED_PAIR.sub(mask_pair, text))


class RedactingFilter(logging.Filter):
    """Scrubs every log record before a handler writes it: known secrets by value, others by key;
    then writes each control, ANSI and bidi character as a visible escape, so that a caller's text
    (a path, a tool name, a value) can neither forge a log line nor hide one.

    On the handler, not a logger, so that it also covers what the SDK and httpx log. With
    `max_chars`, a message is also cut to that length, and only its first ten times that much is
    searched, so that a caller's 3 MB argument name, logged by the SDK, costs next to nothing.
    Cutting at ten times, then again at once, leaves no secret cut in two at the first cut.
    """

    def __init__(self, secrets: Iterable[str], *, max_chars: int | None = None) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]
        self._max_chars = max_chars

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._bounded(escaped(self._scrubbed(message)), len(message))
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Rendered here, so that the traceback's text is scrubbed too.
            chunks = list(traceback.TracebackException(*record.exc_info).format())
            trace = "".join(_frame_or_line(self._scrubbed(chunk)) for chunk in chunks).rstrip("\n")
            rendered = sum(map(len, chunks)) - 1  # as written, less the final newline
            record.exc_text, record.exc_info = self._bounded(trace, rendered, lines=True), None
        return True

    def _scrubbed(self, text: str) -> str:
        searched = text if self._max_chars is None else text[: 10 * self._max_chars]
        return scrub(scrub_pairs(searched), self._secrets)

    def _bounded(self, text: str, original_length: int, *, lines: bool = False) -> str:
        """`text` cut to max_chars (a traceback, ten times that: it is many lines). Escapes may have
        made it longer than the original: the longer of the two is bounded."""
        limit = None if self._max_chars is None else self._max_chars * (10 if lines else 1)
        length = max(len(text), original_length)
        if limit is None or length <= limit:
            return text
        return f"{text[:limit]}… [{length - limit} characters cut]"


# A stack frame's first line, after the margin an exception group draws (`  |   File "..."`).
_FRAME = re.compile(r'[ |]*File "')


def _frame_or_line(chunk: str) -> str:
    """A piece of a traceback, escaped: a stack frame keeps its line breaks (the file and the source
    line); anything else, an exception's message above all, is one line, whatever it holds."""
    if _FRAME.match(chunk):
        return "\n".join(map(escaped, chunk.split("\n")))
    core = chunk.strip("\n")
    start = len(chunk) - len(chunk.lstrip("\n"))
    return chunk[:start] + escaped(core) + chunk[start + len(core) :]
