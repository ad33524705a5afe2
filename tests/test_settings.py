"""Settings: each a flag and an environment variable; the flag wins; bad values fail in one line."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path

import pytest
from pydantic import SecretStr

from census_mcp.census.api import V1
from census_mcp.cli import build_parser
from census_mcp.settings import DEFAULT_SANDBOX_STATE, Settings, SettingsError, from_arguments

BEFORE_RETIREMENT, RETIREMENT_DAY = date(2026, 12, 1), date(2027, 1, 15)


def _settings(*argv: str, today: date = BEFORE_RETIREMENT, **env: str) -> Settings:
    return from_arguments(build_parser().parse_args(list(argv)), env, today=today)


def test_defaults_point_at_the_us_region() -> None:
    settings = _settings()
    assert settings.api_base_url == "https://app.getcensus.com/api/v1"
    assert settings.token is None


def test_region_and_base_url() -> None:
    assert (
        _settings(CENSUS_REGION="eu").api_base_url == V1.hosts["eu"] == "https://app-eu.getcensus.com/api/v1"
    )
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


def test_the_api_version_defaults_to_v1_until_census_retires_it_then_to_v2() -> None:
    assert _settings(today=date(2027, 1, 14)).api_version == "v1"
    on_the_day = _settings(today=RETIREMENT_DAY)
    assert on_the_day.api_version == "v2"
    assert on_the_day.api_base_url == "https://app.getcensus.com/api/v2"
    assert _settings("--api-version", "v1", today=RETIREMENT_DAY).api_version == "v1"
    assert _settings(CENSUS_API_VERSION="v2").api_base_url == "https://app.getcensus.com/api/v2"
    assert "Default: v1 until 2027-01-15" in " ".join(build_parser().format_help().split())


def test_v2_in_the_eu_is_refused_with_a_pointer_to_base_url() -> None:
    with pytest.raises(SettingsError, match=r"API v2 has no known EU host: pass --base-url") as refused:
        _settings("--api-version", "v2", CENSUS_REGION="eu")
    assert "\n" not in str(refused.value)
    eu_v2 = "https://app-eu.getcensus.com/api/v2"
    given = _settings("--api-version", "v2", "--region", "eu", CENSUS_API_BASE_URL=eu_v2)
    assert given.api_base_url == eu_v2


def test_a_base_url_of_the_other_version_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"ends in /api/v1, but the API version is v2"):
        _settings("--api-version", "v2", "--base-url", "https://app.getcensus.com/api/v1")


@pytest.mark.parametrize(
    ("version", "token", "warned"),
    [
        ("v2", "secret-token:abc", "looks like a v1 workspace API token"),
        ("v1", "a-personal-access-token", "if it is a personal access token, it works with API v2 only"),
        ("v1", "secret-token:abc", None),
        ("v2", "a-personal-access-token", None),
    ],
)
def test_a_token_of_the_other_version_is_warned_about_at_start_up(
    version: str, token: str, warned: str | None
) -> None:
    # On the day v1 retires, when its own notice has stopped: only the token's warning is left.
    warnings = _settings("--api-version", version, CENSUS_API_TOKEN=token).warnings(RETIREMENT_DAY)
    if warned:
        assert len(warnings) == 1
        assert warned in warnings[0]
    else:
        assert warnings == []
    assert all(token not in warning for warning in warnings)


def test_a_default_group_on_v1_is_warned_about() -> None:
    assert _settings(CENSUS_GROUP_ID="abundant_giraffe").warnings(RETIREMENT_DAY) == [
        "CENSUS_GROUP_ID is set, but API v1 has no groups: it is ignored."
    ]
    assert _settings("--api-version", "v2", CENSUS_GROUP_ID="abundant_giraffe").group_id == "abundant_giraffe"


def test_secrets_can_come_from_files_as_docker_and_kubernetes_mount_them(tmp_path: Path) -> None:
    token_file, auth_file = tmp_path / "census_token", tmp_path / "mcp_token"
    token_file.write_text("secret-token:from-a-file\n")
    auth_file.write_text("shared-from-a-file-of-32-characters\r\n")
    settings = _settings(CENSUS_API_TOKEN_FILE=str(token_file), CENSUS_MCP_AUTH_TOKEN_FILE=str(auth_file))
    assert settings.token is not None
    assert settings.auth_token is not None
    assert settings.token.get_secret_value() == "secret-token:from-a-file"
    assert settings.auth_token.get_secret_value() == "shared-from-a-file-of-32-characters"
    # The flag still wins, as it does over the variable.
    flagged = _settings("--token", "secret-token:flag", CENSUS_API_TOKEN_FILE=str(token_file))
    assert flagged.token is not None
    assert flagged.token.get_secret_value() == "secret-token:flag"


REDIS_PASSWORD = "redis-canary-pw-8c41"


def test_a_cache_url_holding_redis_password_is_a_secret(tmp_path: Path) -> None:
    """It is read from its _FILE like the other secrets, and no repr of the settings shows it."""
    url = f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"
    url_file = tmp_path / "cache_url"
    url_file.write_text(url + "\n")
    for settings in (_settings(CENSUS_MCP_CACHE_URL=url), _settings(CENSUS_MCP_CACHE_URL_FILE=str(url_file))):
        assert settings.cache_url is not None
        assert settings.cache_url.get_secret_value() == url
        assert REDIS_PASSWORD not in repr(settings)
        assert REDIS_PASSWORD not in str(settings)
        assert url in settings.secrets
        assert REDIS_PASSWORD in settings.secrets


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        (
            {"CENSUS_API_TOKEN": "secret-token:x", "CENSUS_API_TOKEN_FILE": "{file}"},
            "Set CENSUS_API_TOKEN or CENSUS_API_TOKEN_FILE, not both.",
        ),
        (
            {"CENSUS_MCP_AUTH_TOKEN_FILE": "{missing}"},
            "CENSUS_MCP_AUTH_TOKEN_FILE names a file that cannot be read (FileNotFoundError).",
        ),
        ({"CENSUS_API_TOKEN_FILE": "{empty}"}, "CENSUS_API_TOKEN_FILE names an empty file."),
        (
            {"CENSUS_MCP_CACHE_URL": "redis://localhost", "CENSUS_MCP_CACHE_URL_FILE": "{file}"},
            "Set CENSUS_MCP_CACHE_URL or CENSUS_MCP_CACHE_URL_FILE, not both.",
        ),
    ],
)
def test_secret_files_that_cannot_serve_are_refused_in_one_line(
    tmp_path: Path, env: dict[str, str], complaint: str
) -> None:
    (tmp_path / "token").write_text("secret-token:in-file\n")
    (tmp_path / "empty").write_text("\n")
    paths = {"file": tmp_path / "token", "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    with pytest.raises(SettingsError) as refused:
        _settings(**{key: value.format(**paths) for key, value in env.items()})
    assert str(refused.value) == complaint
    assert "in-file" not in str(refused.value)


def test_choices_are_matched_without_regard_to_case() -> None:
    settings = _settings(CENSUS_REGION="EU", CENSUS_API_VERSION="V1", CENSUS_MCP_TRANSPORT="HTTP")
    assert (settings.region, settings.api_version, settings.transport) == ("eu", "v1", "http")
    assert _settings("--log-level", "debug").log_level == "DEBUG"


def test_the_command_line_keeps_the_sandbox_in_the_user_cache_and_direct_settings_keep_nothing() -> None:
    assert _settings().sandbox_state_path == Path(DEFAULT_SANDBOX_STATE)
    assert DEFAULT_SANDBOX_STATE.endswith("census-mcp/sandbox.json")
    assert _settings(CENSUS_MCP_SANDBOX_STATE="off").sandbox_state_path is None
    assert Settings(sandbox=True).sandbox_state_path is None


def test_the_app_is_on_unless_turned_off() -> None:
    assert _settings().app is True
    assert _settings("--no-app").app is False
    assert _settings(CENSUS_MCP_APP="0").app is False
    assert _settings("--no-app", CENSUS_MCP_APP="1").app is False
    assert _settings(CENSUS_MCP_APP="1").app is True
    with pytest.raises(SettingsError, match="CENSUS_MCP_APP"):
        _settings(CENSUS_MCP_APP="sometimes")


# ------------------------------------------------------------------ tokens as people paste them

SHARED = "k7Qv2mXw9LpR4tYz8NcB1sHd6FgJ3aUe"  # 32 characters, as secrets.token_urlsafe(24) makes them


@pytest.mark.parametrize("pasted", [" secret-token:abc ", "secret-token:abc\n", "\tsecret-token:abc\r\n"])
def test_whitespace_around_a_secret_is_stripped_from_the_flag_the_variable_and_the_file(
    tmp_path: Path, pasted: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(pasted)
    for settings in (
        _settings("--token", pasted),
        _settings(CENSUS_API_TOKEN=pasted),
        _settings(CENSUS_API_TOKEN_FILE=str(token_file)),
        _settings(
            CENSUS_MCP_OAUTH_CLIENT_SECRET=pasted, CENSUS_MCP_OAUTH_CLIENT_ID="c", CENSUS_API_TOKEN="t"
        ),
    ):
        secret = settings.token if settings.oauth_client_secret is None else settings.oauth_client_secret
        assert secret is not None
        assert secret.get_secret_value() == "secret-token:abc"
        assert settings.dropped_bearer == ()
    assert _settings(CENSUS_API_TOKEN="  \n").token is None


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer  ", " BEARER "])
def test_a_pasted_bearer_prefix_is_dropped_with_a_warning_that_names_it(prefix: str, tmp_path: Path) -> None:
    settings = _settings(CENSUS_API_TOKEN=prefix + "secret-token:abc")
    assert settings.token is not None
    assert settings.token.get_secret_value() == "secret-token:abc"
    warnings = settings.warnings(RETIREMENT_DAY)
    assert warnings == [
        'CENSUS_API_TOKEN (--token) began with "Bearer ", which census-mcp sends itself: it was dropped.'
    ]
    shared_file = tmp_path / "shared"
    shared_file.write_text(f"{prefix}{SHARED}\n")
    served = _settings(CENSUS_MCP_AUTH_TOKEN_FILE=str(shared_file), CENSUS_API_TOKEN="secret-token:abc")
    assert served.auth_token is not None
    assert served.auth_token.get_secret_value() == SHARED
    assert served.dropped_bearer == ("CENSUS_MCP_AUTH_TOKEN (--auth-token)",)
    # Only tokens sent as bearer tokens lose the word: a client secret may well start with it.
    secret = _settings(CENSUS_MCP_OAUTH_CLIENT_SECRET="Bearer x", CENSUS_MCP_OAUTH_CLIENT_ID="c")
    assert secret.oauth_client_secret is not None
    assert secret.oauth_client_secret.get_secret_value() == "Bearer x"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("secret-token:ab cd", "character 16 is a space inside it"),
        ("secret-token:ab\ncd", "character 16 is a line break inside it"),
        ("secret-token:abcé", "character 17 is not ASCII"),
        ("secret-token:\x7fabc", "character 14 is a control character"),
        ("Bearer secret-token:a b", "character 15 is a space inside it"),
    ],
)
def test_a_token_no_header_can_carry_is_refused_in_one_line_saying_why(token: str, why: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(CENSUS_API_TOKEN=token)
    assert str(refused.value) == (
        f"CENSUS_API_TOKEN (--token) cannot be sent in an HTTP header: {why}; "
        "set it to the token alone, exactly as it was issued."
    )
    assert "abc" not in str(refused.value)
    with pytest.raises(SettingsError, match=f"CENSUS_MCP_AUTH_TOKEN \\(--auth-token\\) .*{why}"):
        _settings("--auth-token", token.replace("secret-token:", SHARED[:13]))


def test_a_shared_http_token_under_32_characters_is_refused_saying_how_to_make_one() -> None:
    short = Settings(sandbox=True, transport="http", auth_token=SecretStr(SHARED[:31]))
    with pytest.raises(SettingsError) as refused:
        short.require_credentials(serving_http=True)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("CENSUS_MCP_AUTH_TOKEN is 31 characters")
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert SHARED[:31] not in message
    Settings(sandbox=True, transport="http", auth_token=SecretStr(SHARED)).require_credentials(
        serving_http=True
    )
    # What the advice makes is long enough.
    Settings(
        sandbox=True, transport="http", auth_token=SecretStr(secrets.token_urlsafe(32))
    ).require_credentials(serving_http=True)


def test_v1s_retirement_is_a_start_up_warning_until_the_day_and_never_on_the_sandbox() -> None:
    day_before = date(2027, 1, 14)
    for today, notice in (
        (date(2026, 12, 4), "Census retires API v1 on 2027-01-15, in 42 days. Switch to API v2"),
        (day_before, "Census retires API v1 on 2027-01-15, tomorrow. Switch to API v2"),
    ):
        [warning] = _settings("--api-version", "v1", CENSUS_API_TOKEN="secret-token:x").warnings(today)
        assert warning.startswith(notice)
        assert "CENSUS_API_VERSION=v2" in warning
    assert _settings("--api-version", "v1", CENSUS_API_TOKEN="secret-token:x").warnings(RETIREMENT_DAY) == []
    assert _settings("--api-version", "v2", CENSUS_API_TOKEN="pat").warnings(day_before) == []
    assert _settings("--sandbox", "--api-version", "v1").warnings(day_before) == []
