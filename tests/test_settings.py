"""Settings: each a flag and an environment variable; the flag wins; bad values fail in one line."""

from __future__ import annotations

import pytest

from census_mcp.cli import build_parser
from census_mcp.settings import REGION_BASE_URLS, Settings, SettingsError, from_arguments


def _settings(*argv: str, **env: str) -> Settings:
    return from_arguments(build_parser().parse_args(list(argv)), env)


def test_defaults_point_at_the_us_region() -> None:
    settings = _settings()
    assert settings.api_base_url == "https://app.getcensus.com/api/v1"
    assert settings.token is None


def test_region_and_base_url() -> None:
    assert _settings(CENSUS_REGION="eu").api_base_url == REGION_BASE_URLS["eu"]
    override = _settings("--region", "eu", CENSUS_API_BASE_URL="http://127.0.0.1:8080/api/v1/")
    assert override.api_base_url == "http://127.0.0.1:8080/api/v1"


def test_flag_wins_over_environment() -> None:
    settings = _settings(
        "--token", "secret-token:flag", "--timeout", "5", CENSUS_API_TOKEN="secret-token:env"
    )
    assert settings.token is not None
    assert settings.token.get_secret_value() == "secret-token:flag"
    assert settings.timeout_seconds == 5.0


def test_token_never_shows_in_repr() -> None:
    settings = _settings(CENSUS_API_TOKEN="secret-token:abc123")
    assert "abc123" not in repr(settings)
    assert "abc123" not in str(settings)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"CENSUS_REGION": "au"}, "CENSUS_REGION"),
        ({"CENSUS_MCP_TIMEOUT": "-1"}, "CENSUS_MCP_TIMEOUT"),
        ({"CENSUS_MCP_SANDBOX": "maybe"}, "CENSUS_MCP_SANDBOX"),
        ({"CENSUS_MCP_SANDBOX_SIZE": "lots"}, "CENSUS_MCP_SANDBOX_SIZE"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        _settings(**env)


def test_credentials_are_required_unless_sandboxed() -> None:
    with pytest.raises(SettingsError, match="CENSUS_API_TOKEN"):
        _settings().require_credentials()
    _settings("--sandbox").require_credentials()
    _settings(CENSUS_API_TOKEN="secret-token:x").require_credentials()
