"""Masking secrets before anything reaches a result, an error or a log line.

Two mechanisms, because secrets arrive two ways:
- by key: a value whose key names a secret (password, private_key, ...) is replaced,
  wherever it sits in a nested object;
- by value: known secret strings (the API token, credentials the caller passed in)
  are cut out of free text such as an error message that echoes the request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a field of this name holds a secret, e.g. `password` or `privateKeyPassphrase`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    normalized = _normalize(spaced)
    return normalized.endswith("_key") or any(fragment in normalized for fragment in _SECRET_FRAGMENTS)


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
