"""Masking by key and scrubbing by value."""

from __future__ import annotations

import json
import logging

import pytest

from census_mcp.redaction import MASK, RedactingFilter, is_secret_key, mask_secrets, scrub, secret_values
from census_mcp.sandbox.source_types import SOURCE_TYPES

# Secret fields as warehouses and their connectors spell them, grouped by the one part of the
# rule that catches each: were that part lost, its names would show unmasked.
SECRET_SPELLINGS = [
    # any name ending in _key, however it separates its words
    "account_key",
    "accountKey",
    "encryption_key",
    "ssh_key",
    "SSH Key",
    "private-key",
    # the fragments, also with more after them
    "passphrase",
    "ssh_passphrase",
    "passwd",
    "db_passwd",
    "pwd",
    "PWD",
    "privatekey",
    "keyfile",
    "ssh_keyfile",
    "apikey",
    "APIKEY",
    "credentials_json",
    "signature",
    "request_signature",
    "service_account_key_json",
    "api_key_v2",
    "access_key_id",
    "client_key_data",
    "auth_key_p8",
]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "private_key",
        "private_key_pkcs8",
        "private_key_passphrase",
        "service_account_key",
        "key_file",
        "access_token",
        "client_secret",
        "privateKeyPassphrase",
        "ssh_tunnel_private_key",
        "api_key",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["hostname", "user", "account", "warehouse", "use_keypair", "project_id", "location", "credentials"],
)
def test_plain_keys(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize("key", SECRET_SPELLINGS)
def test_every_spelling_of_a_secret_is_masked_at_any_depth_and_scrubbed(key: str) -> None:
    value = f"s3cret-under-{key}"
    details = {"hostname": "db", key: value, "tunnel": {"hops": [{"host": "bastion", key: value}]}}
    masked = mask_secrets(details)
    assert value not in json.dumps(masked)
    assert masked == {"hostname": "db", key: MASK, "tunnel": {"hops": [{"host": "bastion", key: MASK}]}}
    deep_only = {"tunnel": {"hops": [{"host": "bastion", key: value}]}}
    assert scrub(f"Census refused {value} on db", secret_values(deep_only)) == f"Census refused {MASK} on db"


def test_empty_false_and_null_secrets_stay_visible() -> None:
    """They hide nothing, and tell the model what is (not) configured."""
    details = {"password": "", "ssh_key": False, "private_key": None, "token": True}
    assert mask_secrets(details) == details


def test_every_leaf_of_a_secret_object_is_scrubbed_and_nothing_else() -> None:
    """A secret may be an object (a service account key) or a list: each string and number in it
    is a secret; its flags and nulls are not, or every "True" in a message would be cut."""
    body = {
        "service_account_key": {
            "private_key": "pk-9f2c",
            "client_id": 118273645,
            "disabled": False,
            "project": None,
        },
        "ssh_keys": {"private_key": ["line-one-7a1d", "line-two-7a1d"], "passphrase": None},
        "note": "kept",
    }
    assert set(secret_values(body)) == {"pk-9f2c", "118273645", "line-one-7a1d", "line-two-7a1d"}
    said = "pk-9f2c with client 118273645 and line-two-7a1d: disabled is False, note kept"
    assert (
        scrub(said, secret_values(body))
        == f"{MASK} with client {MASK} and {MASK}: disabled is False, note kept"
    )


def test_scrub_cuts_secrets_from_four_characters() -> None:
    assert scrub("PIN 4921 then 492", ["4921", "492"]) == f"PIN {MASK} then 492"


def test_a_multi_line_secret_echoed_whole_is_cut_whole_short_lines_too() -> None:
    """Each line of a key is cut on its own where it shows alone; where the key shows whole, so is
    it cut, with the lines too short to be cut alone (the end of a PEM body may be two characters)."""
    key = "MIIEvQIBADANBgkq\nhkiG9w0BAQEF\nAg"
    assert scrub(f"bad key {key} given", [key]) == f"bad key {MASK} given"


def test_a_secret_containing_another_is_cut_whole() -> None:
    """Longest first: cutting the shorter first would leave the rest of the longer one in sight."""
    assert scrub("key paper-tiger-2024-x", ["tiger-2024", "paper-tiger-2024-x"]) == f"key {MASK}"


def test_every_password_field_of_the_sandbox_source_types_is_a_secret_key() -> None:
    """The fields Census itself marks as passwords, as the sandbox serves them."""
    password_fields = {
        field["id"]
        for source_type in SOURCE_TYPES.values()
        for field in source_type["configuration_fields"]["fields"]
        if field["is_password_type_field"]
    }
    assert password_fields >= {"password", "private_key_pkcs8", "service_account_key", "access_token"}
    assert [field for field in sorted(password_fields) if not is_secret_key(field)] == []


def test_mask_secrets_at_any_depth_keeps_flags_and_nulls() -> None:
    details = {
        "user": "DEV",
        "password": "pw-1",
        "use_keypair": True,
        "private_key": None,
        "nested": {"service_account_key": {"private_key": "k", "client_email": "x@y"}},
        "list": [{"token": "t"}],
    }
    assert mask_secrets(details) == {
        "user": "DEV",
        "password": MASK,
        "use_keypair": True,
        "private_key": None,
        "nested": {"service_account_key": MASK},
        "list": [{"token": MASK}],
    }


def test_secret_values_and_scrub_cover_multi_line_keys() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\n-----END PRIVATE KEY-----"
    body = {"connection": {"credentials": {"hostname": "db", "private_key": key, "password": "hunter22"}}}
    secrets = list(secret_values(body))
    assert set(secrets) == {key, "hunter22"}
    message = "bad key line MIIEvQIBADANBgkq and password hunter22 for db"
    cleaned = scrub(message, secrets)
    assert "MIIEvQIBADANBgkq" not in cleaned
    assert "hunter22" not in cleaned
    assert cleaned.endswith("for db")


def _crash(message: str) -> RuntimeError:
    """An exception that was raised, so that it carries a traceback."""
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def _filtered(message: str, *, max_chars: int, crash: BaseException | None = None) -> logging.LogRecord:
    """A record as a handler with a bounded RedactingFilter, knowing one secret, leaves it."""
    exc_info = None if crash is None else (type(crash), crash, crash.__traceback__)
    record = logging.LogRecord("tests.redaction", logging.ERROR, __file__, 1, message, None, exc_info)
    RedactingFilter(["tok-5e3a9"], max_chars=max_chars).filter(record)
    return record


def _trace(crash: BaseException) -> str:
    return logging.Formatter().formatException((type(crash), crash, crash.__traceback__))


def test_a_log_line_over_its_bound_is_cut_saying_how_much_was_cut() -> None:
    assert _filtered("a" * 100, max_chars=100).getMessage() == "a" * 100
    assert _filtered("b" * 250, max_chars=100).getMessage() == "b" * 100 + "… [150 characters cut]"
    assert _filtered("tok-5e3a9 " + "c" * 200, max_chars=20).getMessage() == (
        f"{MASK} {'c' * (20 - len(MASK) - 1)}… [190 characters cut]"
    )


def test_a_traceback_may_be_ten_times_a_line_then_is_cut_too() -> None:
    short = _crash("x" * 500)
    assert _filtered("crashed", max_chars=100, crash=short).exc_text == _trace(short)
    long = _crash("tok-5e3a9 " + "y" * 3000)
    trace = _trace(long)
    cut = _filtered("crashed", max_chars=100, crash=long).exc_text
    assert cut == trace.replace("tok-5e3a9", MASK)[:1000] + f"… [{len(trace) - 1000} characters cut]"


def test_a_traceback_with_nothing_to_escape_is_written_as_python_writes_it() -> None:
    """Task groups raise exception groups, whose frames Python draws inside a margin."""

    def fail(message: str) -> None:
        raise ValueError(message)

    try:
        try:
            fail("inner")
        except ValueError as inner:
            raise ExceptionGroup("two failed", [inner, KeyError("k")]) from None
    except ExceptionGroup as group:
        crash = group
    assert _filtered("crashed", max_chars=2000, crash=crash).exc_text == _trace(crash)
    assert "    |     raise ValueError(message)\n" in _trace(crash) + "\n"


@pytest.mark.parametrize("message", ["ends in an X", "ends in a space "])
def test_a_traceback_keeps_its_message_to_the_last_character(message: str) -> None:
    crash = _crash(message)
    assert _filtered("crashed", max_chars=2000, crash=crash).exc_text == _trace(crash)


def test_a_tracebacks_message_stays_on_one_line_while_its_frames_keep_theirs() -> None:
    crash = _crash("one\n2026-12-01 00:00:00,000 ERROR census_mcp: forged")
    trace = _trace(crash)
    assert _filtered("crashed", max_chars=2000, crash=crash).exc_text == trace.replace("one\n", "one\\n")
    assert trace.count("\n") > 2  # "Traceback ...", the frame's file and its source line
