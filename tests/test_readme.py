"""The README's commands work as written: the two of its first screen, the v2 section's check, the
HTTP try's token, and the doctor line of Troubleshooting. Each runs as the README prints it, in
bash, with only what the reader supplies filled in (their token; a loopback sandbox for Census)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from census_mcp.settings import Settings
from tests.conftest import running_sandbox
from tests.test_stdio import _console_script, _environment

README = (Path(__file__).parent.parent / "README.md").read_text()
BASH = shutil.which("bash") or "/bin/bash"


def _section(heading: str) -> str:
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced blocks of `text`, of one language when given."""
    found = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    return [body for kind, body in found if language is None or kind == language]


def _bash(line: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A README line in bash, with the clone's `.venv/bin/census-mcp` being the installed script."""
    script = _console_script()
    path = f"{os.path.dirname(script)}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [BASH, "-c", line.replace(".venv/bin/census-mcp", script)],
        env=_environment(PATH=path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_first_screen_says_what_it_is_then_gives_two_one_line_commands() -> None:
    first_screen = README.split("\n## ", 1)[0]
    assert first_screen.splitlines()[2].startswith("An MCP server for the **sources** of a Census")
    [commands, sample] = _blocks(first_screen)[:2]
    lines = [line for line in commands.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2
    install_and_run, install_and_test = lines
    assert install_and_run.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")
    assert install_and_test.startswith('python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && ')
    assert install_and_test.endswith("scripts/check")
    # The main job, as printed, prints what the README shows (a fresh sandbox: nothing kept).
    main_job = install_and_run.split(" && ")[-1]
    done = _bash(main_job)
    assert done.returncode == 0, done.stderr
    shown = sample.splitlines()
    assert done.stdout.splitlines()[:4] == shown[:4]
    assert shown[-1].startswith("Read from the sandbox at ")
    assert done.stdout.splitlines()[-1].startswith("Read from the sandbox at ")
    # The Node, Chromium and redis detail lives under Development, not here.
    for detail in ("EBADENGINE", "Chromium", "redis"):
        assert detail not in first_screen
        assert detail in _section("Development")


def test_moving_to_v2_comes_straight_after_with_the_eu_first_and_a_complete_client_config() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[0] == "Moving to API v2 before 2027-01-15"
    section = _section(headings[0])
    assert section.index("**In the EU?**") < section.index("**Switching.**")
    assert "**Do source ids carry over?** Expected, not guaranteed." in section
    [config] = [block for block in _blocks(section.replace("   ```", "```"), "json")]
    server = json.loads(config)["mcpServers"]["census"]
    assert server["env"]["CENSUS_API_VERSION"] == "v2"
    assert set(server["env"]) == {"CENSUS_API_VERSION", "CENSUS_API_TOKEN", "CENSUS_GROUP_ID"}


@pytest.mark.parametrize("heading", ["Moving to API v2 before 2027-01-15", "Troubleshooting"])
def test_the_doctor_check_runs_as_written_with_the_readers_token(heading: str) -> None:
    [line] = re.findall(r"CENSUS_API_TOKEN='<[^>]+>'[^`\n]*census-mcp[^`\n]*doctor", _section(heading))
    with running_sandbox("v2") as sandbox:
        # The reader's PAT, and Census on loopback: the command itself is as printed.
        done = _bash(re.sub(r"'<[^>]+>'", sandbox.token, line), CENSUS_API_BASE_URL=sandbox.base_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    Census: the token was accepted" in done.stdout
    assert re.search(r"^ok    group: ", done.stdout, re.M)


def test_the_http_try_shows_the_token_it_makes_and_the_server_takes_it() -> None:
    [block] = [block for block in _blocks(_section("Deployment"), "bash") if "for a try" in block]
    make_and_show = block.splitlines()[1]
    done = _bash(make_and_show + '; echo "$CENSUS_MCP_AUTH_TOKEN"')
    assert done.returncode == 0, done.stderr
    shown, kept = done.stdout.splitlines()
    assert shown == f"Authorization: Bearer {kept}"
    assert len(kept) >= 32
    Settings(sandbox=True, transport="http", auth_token=SecretStr(kept)).require_credentials(
        serving_http=True
    )
