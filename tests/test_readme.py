"""The README's commands work as written: the two of its first screen, the v2 section's check and the
doctor line of Troubleshooting; and so does the docs' HTTP try, which shows the token it makes and
serves with it. Each runs as printed, in bash, with only what the reader supplies filled in (their
token; a loopback sandbox for Census; a free port)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from datetime import date
from pathlib import Path

import httpx2

from census_mcp.census.api import default_version
from tests.conftest import running_sandbox
from tests.docs import DOCS, README, ROOT, block_tested_as, section
from tests.test_hostile_http import _result, _tool_call
from tests.test_real_clients import _free_port, _wait_until_healthy
from tests.test_stdio import _console_script, _environment

TEXT = README.read_text()
BASH = shutil.which("bash") or "/bin/bash"


def _blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced blocks of `text` (indented ones too), of one language when given."""
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
    first_screen = TEXT.split("\n## ", 1)[0]
    assert first_screen.splitlines()[2].startswith("An MCP server for the **sources** of a Census")
    # Not the US Census Bureau's data, which most servers of this name serve.
    assert "not the US Census Bureau" in first_screen.split("\n\n")[1]
    commands = block_tested_as("first-screen")
    assert commands in first_screen
    lines = [line for line in commands.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 2
    install_and_run, install_and_test = lines
    assert install_and_run.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")
    assert install_and_test.startswith('python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && ')
    assert install_and_test.endswith("scripts/check")
    # The second is the whole of CI: .ci/run makes the same install and runs the same script.
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.endswith('pip install -e ".[test]"') for line in ci)
    assert ci[-1] == "scripts/check"
    # The main job, as printed, prints what the README shows (a fresh sandbox: nothing kept).
    sample = _blocks(first_screen)[1]
    main_job = install_and_run.split(" && ")[-1]
    done = _bash(main_job)
    assert done.returncode == 0, done.stderr
    shown = sample.splitlines()
    assert done.stdout.splitlines()[:4] == shown[:4]
    assert shown[-1].startswith("Read from the sandbox at ")
    assert done.stdout.splitlines()[-1].startswith("Read from the sandbox at ")
    # The Node, Chromium and redis detail lives in the development docs, not here.
    for detail in ("EBADENGINE", "Chromium", "redis"):
        assert detail not in first_screen
        assert detail in (DOCS / "development.md").read_text()


def test_moving_to_v2_comes_straight_after_with_the_eu_first_and_a_complete_client_config() -> None:
    headings = re.findall(r"^## (.+)$", TEXT, re.M)
    assert headings[0] == "Moving to API v2 before 2027-01-15"
    v2 = section(TEXT, headings[0])
    assert v2.index("**In the EU?**") < v2.index("**Switching.**")
    assert "**Do source ids carry over?** Expected, not guaranteed." in v2
    assert block_tested_as("v2-doctor") in "\n".join(line.strip() for line in v2.splitlines())
    [config] = _blocks(v2, "json")
    server = json.loads(config)["mcpServers"]["census"]
    assert server["env"]["CENSUS_API_VERSION"] == "v2"
    assert set(server["env"]) == {"CENSUS_API_VERSION", "CENSUS_API_TOKEN", "CENSUS_GROUP_ID"}


def _runs_with_the_readers_token(line: str) -> None:
    """`line`, a doctor check with the reader's PAT in it, against Census on loopback."""
    with running_sandbox("v2") as sandbox:
        done = _bash(re.sub(r"'<[^>]+>'", sandbox.token, line), CENSUS_API_BASE_URL=sandbox.base_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    Census: the token was accepted" in done.stdout
    assert re.search(r"^ok    group: ", done.stdout, re.M)


def test_the_v2_check_runs_as_written_with_the_readers_token() -> None:
    [line] = block_tested_as("v2-doctor").splitlines()
    _runs_with_the_readers_token(line)


def test_the_troubleshooting_doctor_line_runs_as_written_with_the_readers_token() -> None:
    doctor = r"CENSUS_API_TOKEN='<[^>]+>'[^`\n]*census-mcp[^`\n]*doctor"
    [line] = re.findall(doctor, section(TEXT, "Troubleshooting"))
    _runs_with_the_readers_token(line)


def test_the_http_try_shows_the_token_it_makes_and_serves_with_it(tmp_path: Path) -> None:
    """The block runs whole: it prints `Authorization: Bearer TOKEN`, and the server it starts lets in
    that header and no request without it."""
    port = _free_port()
    script = block_tested_as("http-try").replace("census-mcp", _console_script())
    script = script.replace("--port 8000", f"--port {port}")
    log = tmp_path / "stderr.txt"
    with running_sandbox(default_version(date.today())) as sandbox, log.open("w") as stderr:
        server = subprocess.Popen(
            [BASH, "-c", script.replace("secret-token:...", sandbox.token)],
            env=_environment(CENSUS_API_BASE_URL=sandbox.base_url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # bash and the server it starts, stopped together
        )
        try:
            assert server.stdout is not None
            shown = server.stdout.readline().rstrip("\n")
            token = shown.removeprefix("Authorization: Bearer ")
            assert shown == f"Authorization: Bearer {token}"
            assert len(token) >= 32
            root = f"http://127.0.0.1:{port}"
            _wait_until_healthy(root, server, log)
            headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            call = _tool_call("get_source", {"source_id": 2})
            refused = httpx2.post(f"{root}/mcp", content=call, headers=headers, timeout=30)
            assert refused.status_code == 401
            authorized = headers | {"Authorization": shown.split(": ", 1)[1]}
            answer = httpx2.post(f"{root}/mcp", content=call, headers=authorized, timeout=30)
            assert answer.status_code == 200, answer.text
            assert _result(answer)["isError"] is False
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
