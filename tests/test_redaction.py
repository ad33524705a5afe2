"""Masking by key and scrubbing by value."""

from __future__ import annotations

import pytest

from census_mcp.redaction import MASK, is_secret_key, mask_secrets, scrub, secret_values


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
