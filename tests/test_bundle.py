"""The Claude Desktop bundle: `mcpb pack` builds a small one from the repo, and once unpacked it
runs the way manifest.json's mcp_config says and serves the tools over stdio.

`uv run --directory <bundle> census-mcp` locks and installs the project's dependencies before it
starts the server, and tests may not use the network. So the test runs that exact command and
those arguments, adding only environment variables uv reads:

- UV_OFFLINE=1: uv never touches the network and resolves, builds and installs from its cache.
- UV_CACHE_DIR=build/uv-cache: scripts/check fills that cache during setup (online) by running
  `uv sync` on a copy of the files the bundle ships, so it holds everything the offline run needs.
- UV_PYTHON=this interpreter, UV_PYTHON_DOWNLOADS=never: the Python the cache was filled for
  (wheels such as pydantic-core are per version), and never a download.

A wheelhouse (UV_FIND_LINKS + UV_NO_INDEX) is not enough: `uv run` locks for every platform and
every extra (pywin32 on Windows, the test and bench extras), so the wheelhouse would need all of
those too, while the cache keeps the index metadata of that lock. The bundle still gets its own
.venv and uv.lock, built from the unpacked files, as it would on a user's machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from datetime import date
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextResourceContents

from census_mcp.app import APP_URI
from census_mcp.census.api import default_version
from census_mcp.server import result_text
from tests.conftest import Sandbox
from tests.helpers import call_ok
from tests.test_contract import EXPECTED
from tests.test_real_clients import ROOT, node_environment, node_tool
from tests.test_stdio import _environment

pytestmark = pytest.mark.xdist_group("bundle")  # one worker packs the bundle, once
UV_CACHE = ROOT / "build" / "uv-cache"
MAX_BUNDLE_BYTES = 1_000_000
LEFT_OUT = re.compile(r"(^|/)(\.venv|node_modules|tests|bench|\.git|build|__pycache__)/|\.pyc$")


def _mcpb(*arguments: str) -> None:
    done = subprocess.run(
        [node_tool("mcpb"), *arguments],
        env=node_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo packed once, by the same CLI a developer uses to publish the bundle."""
    packed = tmp_path_factory.mktemp("bundle") / "census-mcp.mcpb"
    _mcpb("pack", str(ROOT), str(packed))
    return packed


def test_the_bundle_ships_the_server_and_nothing_else(bundle: Path) -> None:
    """.mcpbignore keeps the virtualenv, the Node tools, tests and caches out of what users download."""
    assert bundle.stat().st_size < MAX_BUNDLE_BYTES
    names = zipfile.ZipFile(bundle).namelist()
    shipped = {"manifest.json", "pyproject.toml", "uv.lock", "README.md", "LICENSE", "census_mcp/server.py"}
    app = {
        "census_mcp/app/sources.html",
        "census_mcp/app/vendor/app-with-deps.js",
        "census_mcp/app/vendor/LICENSE",
    }
    assert shipped | app <= set(names)
    assert [name for name in names if LEFT_OUT.search(name)] == []


def _substitute(text: str, values: dict[str, str]) -> str:
    """Claude Desktop's placeholders: ${__dirname} and ${user_config.KEY}; an unknown one fails."""
    return re.sub(r"\$\{([^}]+)\}", lambda match: values[match.group(1)], text)


def _launch(unpacked: Path, **user_config: str) -> StdioServerParameters:
    """The unpacked bundle's server as Claude Desktop launches it, with these settings filled in."""
    if not UV_CACHE.is_dir():
        pytest.fail(f"{UV_CACHE} is missing: run scripts/check, whose setup step fills it")
    config = json.loads((unpacked / "manifest.json").read_text())["server"]["mcp_config"]
    values = {"__dirname": str(unpacked)} | {
        f"user_config.{key}": value for key, value in user_config.items()
    }
    # `uv` is found on PATH, as Claude Desktop finds it; pip installs it next to this interpreter.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    assert shutil.which(config["command"], path=path), "uv is missing: pip install -e '.[test]'"
    offline = {
        "PATH": path,
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": str(UV_CACHE),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env = _environment(**offline) | {key: _substitute(value, values) for key, value in config["env"].items()}
    env.pop("VIRTUAL_ENV", None)  # Claude Desktop runs it with no virtualenv active.
    return StdioServerParameters(
        command=config["command"], args=[_substitute(arg, values) for arg in config["args"]], env=env
    )


_SETTINGS = {
    "census_group_id": "",
    "census_region": "us",
    "read_only": "false",
}


@pytest.mark.anyio
async def test_the_unpacked_bundle_runs_as_its_manifest_says(
    bundle: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    unpacked = tmp_path / "census-mcp"
    _mcpb("unpack", str(bundle), str(unpacked))
    params = _launch(
        unpacked,
        sandbox="false",
        census_api_token=sandbox.token,
        census_api_version=sandbox.api_version,
        census_api_base_url=sandbox.base_url,
        **_SETTINGS,
    )
    async with Client(params) as client:
        listed = await client.list_tools()
        assert [tool.name for tool in listed.tools] == EXPECTED
        result = await call_ok(client, "list_sources", {})
        assert result.structured_content is not None
        assert result.structured_content["workspace_total"] == len(sandbox.workspace.sources)
        # The wheel uv built from the bundle carries the app's document and its bridge.
        [app] = (await client.read_resource(APP_URI)).contents
        assert isinstance(app, TextResourceContents)
        assert "globalThis.McpExtApps" in app.text
    # The token and base URL came through mcp_config's env, and the code was the bundle's own.
    assert any(request.path.endswith("/sources") for request in sandbox.workspace.requests)
    [installed] = unpacked.glob(".venv/lib/python*/site-packages/census_mcp-*.dist-info/direct_url.json")
    assert json.loads(installed.read_text())["url"] == unpacked.as_uri()
    # Every dependency at the version the lock pins, the one the tests ran.
    locked = tomllib.loads((unpacked / "uv.lock").read_text())["package"]
    site_packages = installed.parent.parent
    for name in ("mcp", "httpx2", "pydantic"):
        version = next(package["version"] for package in locked if package["name"] == name)
        assert (site_packages / f"{name}-{version}.dist-info").is_dir(), f"{name} is not at {version}"


@pytest.mark.anyio
@pytest.mark.parametrize("api_version", ["", "v2"])
async def test_the_bundle_offers_the_sandbox_so_it_can_be_tried_without_an_account(
    bundle: Path, tmp_path: Path, api_version: str
) -> None:
    unpacked = tmp_path / "census-mcp"
    _mcpb("unpack", str(bundle), str(unpacked))
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert manifest["user_config"]["sandbox"]["type"] == "boolean"
    assert manifest["user_config"]["census_api_token"]["required"] is False
    params = _launch(
        unpacked,
        sandbox="true",
        census_api_token="",
        census_api_version=api_version,
        census_api_base_url="",
        **_SETTINGS,
    )
    async with Client(params) as client:
        result = await call_ok(client, "list_sources", {"test_status": "failed"})
    assert result.structured_content is not None
    assert result.structured_content["workspace_total"] == 60
    assert "Read from the sandbox at" in result_text(result)
    # Left empty, the version is the one the date gives; v2 shows the groups.
    spoken = api_version or default_version(date.today())
    assert ("by_group" in result.structured_content["counts"]) == (spoken == "v2")
