"""A release anyone can install by name: one version everywhere, a server.json the MCP Registry takes
(its published schema, and the rules it checks at publish time that can be checked before it), the
README's mcp-name line, a changelog entry, and workflows that run CI and publish each part."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft7Validator

import census_mcp
from census_mcp.settings import OPTIONS
from tests.docs import README, ROOT
from tests.test_stdio import _console_script

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
SERVER = json.loads((ROOT / "server.json").read_text())
SCHEMA_FILE = ROOT / "tests" / "registry" / "server-2025-12-11.schema.json"
SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"
REPOSITORY = PROJECT["urls"]["Repository"]
OWNER = urlsplit(REPOSITORY).path.strip("/").split("/")[0]
WORKFLOWS = ROOT / ".github" / "workflows"


def _package(registry_type: str) -> dict[str, Any]:
    [package] = [package for package in SERVER["packages"] if package["registryType"] == registry_type]
    return package


def test_one_version_from_the_package_metadata_everywhere() -> None:
    installed = version("census-mcp")
    assert installed == VERSION, f"installed {installed}, pyproject.toml {VERSION}: pip install -e . again"
    assert census_mcp.__version__ == VERSION
    printed = subprocess.run([_console_script(), "--version"], capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == f"census-mcp {VERSION}"
    assert json.loads((ROOT / "manifest.json").read_text())["version"] == VERSION
    assert SERVER["version"] == VERSION
    assert {package["version"] for package in SERVER["packages"]} == {VERSION}


def test_server_json_fits_the_registrys_published_schema() -> None:
    """The schema is the registry's file, byte for byte (tests/registry/README.md)."""
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA_FILE.read_text())
    assert SERVER["$schema"] == schema["$id"]
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    assert not [error.message for error in validator.iter_errors(SERVER)]
    # The schema bites: a description over 100 characters is refused.
    assert list(validator.iter_errors(SERVER | {"description": "x" * 101}))


def test_server_json_names_census_fivetran_activations_and_this_projects_home() -> None:
    """The name clashes with US Census Bureau servers (io.github.mcpwright/census-mcp, for one): the
    description says which Census. The owner in pyproject.toml's URLs is the one everything names."""
    assert SERVER["name"] == f"io.github.{OWNER}/census-mcp"
    assert "Census (Fivetran Activations)" in SERVER["description"]
    assert SERVER["description"] == PROJECT["description"]
    assert SERVER["repository"] == {"url": REPOSITORY, "source": "github"}
    assert SERVER["websiteUrl"] == PROJECT["urls"]["Documentation"]
    mkdocs = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert (mkdocs["site_url"], mkdocs["repo_url"]) == (PROJECT["urls"]["Documentation"], REPOSITORY)


def test_the_readme_carries_the_mcp_name_the_registry_looks_for() -> None:
    """The registry proves the PyPI package is this server's by `mcp-name: NAME` in its description,
    which is the README."""
    assert re.findall(r"mcp-name: (\S+)", README.read_text()) == [SERVER["name"]]
    assert PROJECT["readme"] == "README.md"


def test_the_pypi_package_runs_over_stdio_with_the_token_as_a_secret() -> None:
    package = _package("pypi")
    assert package["registryBaseUrl"] == "https://pypi.org"  # the only PyPI the registry accepts
    assert package["identifier"] == PROJECT["name"]
    assert package["transport"] == {"type": "stdio"}
    assert package["runtimeHint"] == "uvx"
    inputs = {variable["name"]: variable for variable in package["environmentVariables"]}
    assert {"CENSUS_API_TOKEN", "CENSUS_API_VERSION", "CENSUS_REGION", "CENSUS_GROUP_ID"} <= set(inputs)
    assert inputs["CENSUS_API_TOKEN"]["isSecret"] is True
    assert inputs["CENSUS_API_TOKEN"]["isRequired"] is True
    assert [name for name, variable in inputs.items() if variable.get("isSecret")] == ["CENSUS_API_TOKEN"]
    # Each input is a setting the server reads, with its choices and default.
    options = {option.env: option for option in OPTIONS}
    for name, variable in inputs.items():
        option = options[name]
        assert variable.get("choices") == (list(option.choices) if option.choices else None), name
        shown = str(option.default).lower() if option.default is not None else None
        assert variable.get("default") == shown, name
        assert variable["format"] == ("boolean" if option.is_switch else "string"), name


def test_the_bundle_is_a_github_release_download_of_this_version() -> None:
    package = _package("mcpb")
    assert package["identifier"] == f"{REPOSITORY}/releases/download/v{VERSION}/census-mcp-{VERSION}.mcpb"
    assert package["transport"] == {"type": "stdio"}


def test_a_release_fills_in_the_bundles_digest(tmp_path: Path) -> None:
    """The registry takes an mcpb package only with its SHA-256, known once the release built it."""
    bundle = tmp_path / f"census-mcp-{VERSION}.mcpb"
    bundle.write_bytes(b"a bundle")
    script = ROOT / "scripts" / "release_server_json.py"
    done = subprocess.run(
        [sys.executable, str(script), str(ROOT / "server.json"), str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    )
    released = json.loads(done.stdout)
    [entry] = [package for package in released["packages"] if package["registryType"] == "mcpb"]
    assert entry["fileSha256"] == hashlib.sha256(b"a bundle").hexdigest()
    assert released | {"packages": SERVER["packages"]} == SERVER
    validator = Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    assert not list(validator.iter_errors(released))
    other = tmp_path / "census-mcp-0.0.1.mcpb"
    other.write_bytes(b"another")
    refused = subprocess.run(
        [sys.executable, str(script), str(ROOT / "server.json"), str(other)], capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "is not the bundle server.json names" in refused.stderr


def test_the_changelog_has_this_versions_entry() -> None:
    """Keep a Changelog: Unreleased first, then each version, newest first, each with its link."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (.+))?$", changelog, re.M)
    assert headings[0] == ("Unreleased", "")
    versions = [name for name, _ in headings[1:]]
    assert versions[0] == VERSION
    assert versions == sorted(versions, key=lambda name: tuple(map(int, name.split("."))), reverse=True)
    for name, dated in headings[1:]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}|Unreleased", dated), name
    for name, _ in headings:
        assert re.search(rf"^\[{re.escape(name)}\]: {re.escape(REPOSITORY)}/", changelog, re.M), name


def _workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def test_ci_runs_ci_run_on_pull_requests() -> None:
    ci = _workflow("ci.yml")
    triggers = ci[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers
    assert "workflow_call" in triggers
    [job] = ci["jobs"].values()
    assert {"run": "bash .ci/run"} | {"name": ".ci/run"} in job["steps"]


def test_a_version_tag_tests_then_publishes_each_part() -> None:
    release = _workflow("release.yml")
    assert release[True] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["build"]["needs"] == "ci"
    build = "\n".join(step.get("run", "") for step in jobs["build"]["steps"])
    for command in ("python -m build", "twine check --strict", "mcpb pack", "scripts/release_server_json.py"):
        assert command in build
    # Trusted publishing: PyPI takes the job's OIDC token, and only that job may ask for one with it.
    publish = jobs["pypi"]
    assert any(step.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for step in publish["steps"])
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    attach = "\n".join(step.get("run", "") for step in jobs["github-release"]["steps"])
    assert "gh release create" in attach
    assert "*.mcpb" in attach
    registry = "\n".join(step.get("run", "") for step in jobs["mcp-registry"]["steps"])
    assert "mcp-publisher login github-oidc" in registry
    assert "mcp-publisher publish server.json" in registry
    assert release["permissions"] == {}
    for name, job in jobs.items():
        if "steps" in job:
            assert "permissions" in job, f"{name} sets its own permissions"


@pytest.mark.parametrize("workflow", ["ci.yml", "release.yml"])
def test_every_action_is_pinned_to_a_commit(workflow: str) -> None:
    uses = re.findall(r"uses: (\S+)", (WORKFLOWS / workflow).read_text())
    for action in uses:
        assert action.startswith("./") or re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action
