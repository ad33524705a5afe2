"""The README and the docs site: a README a newcomer reads (at most 20,000 bytes, its links into the
docs resolving), a tools reference that is `tools/list` itself, and commands that are either run here
or marked illustrative. `mkdocs build --strict` (scripts/check) checks the site's own links."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from mcp import Client

from tests.docs import DOCS, README, ROOT, block_tested_as, blocks, expanded, pages, section
from tests.test_stdio import _console_script, _environment

pytestmark = pytest.mark.anyio

BASH = shutil.which("bash") or "/bin/bash"
SITE = "https://census-mcp.github.io/census-mcp/"
REPOSITORY = "https://github.com/census-mcp/census-mcp"
TOOLS_PAGE = DOCS / "tools.md"
BEGIN, END = "<!-- tools/list: begin -->\n", "<!-- tools/list: end -->"
# The MCP spec's defaults for the hints a tool leaves out.
SPEC_DEFAULTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False}


def test_the_readme_is_at_most_20000_bytes() -> None:
    size = len(README.read_bytes())
    assert size <= 20_000, f"README.md is {size} bytes: move detail into the docs"


def test_every_shell_block_is_run_by_a_test_or_marked_illustrative() -> None:
    shell = [block for page in pages() for block in blocks(page) if block.is_shell]
    unmarked = [f"{block.page.name}:{block.line}" for block in shell if not block.is_marked]
    assert not unmarked, f"shell blocks marked neither tested nor illustrative: {unmarked}"
    fetched = {
        name
        for test in (ROOT / "tests").glob("*.py")
        for name in re.findall(r'block_tested_as\("([a-z0-9-]+)"\)', test.read_text())
    }
    named = {block.tested_as for block in shell if block.tested_as}
    assert named <= fetched, f"marked tested, yet no test fetches them: {sorted(named - fetched)}"
    for name in named:
        block_tested_as(name)  # every copy of a block shown twice is the same


def test_every_json_block_parses() -> None:
    for page in pages():
        for block in blocks(page):
            if block.language == "json":
                json.loads(block.body)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (its default slugify)."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", re.sub(r"`|\*\*", "", text)).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _page_for(url: str) -> Path:
    path = urlsplit(url).path.removeprefix(urlsplit(SITE).path).strip("/")
    return DOCS / f"{path or 'index'}.md"


def test_the_readme_links_into_docs_pages_and_headings_that_exist() -> None:
    links = re.findall(r"\]\((https://[^)\s]+)\)", README.read_text())
    into_site = [link for link in links if link.startswith(SITE)]
    assert len(into_site) >= 10
    for link in into_site:
        page = _page_for(link.split("#")[0])
        assert page.is_file(), f"{link}: no {page.relative_to(ROOT)}"
        if "#" in link:
            headings = re.findall(r"^#+ (.+)$", expanded(page), re.M)
            assert link.split("#")[1] in {_slug(heading) for heading in headings}, link
    into_repository = [link for link in links if link.startswith(REPOSITORY)]
    assert into_repository, "the README names the repository's files by their public URLs"
    for link in into_repository:
        # .../blob/main/PATH and raw.githubusercontent.com/.../main/PATH name a file of this repository.
        path = re.sub(r"^/census-mcp/census-mcp/(blob|raw)/main/", "", urlsplit(link).path)
        assert (ROOT / path).is_file(), link
    [screenshot] = re.findall(r"!\[[^\]]+\]\((\S+)\)", README.read_text())
    assert screenshot.endswith("/census-mcp/census-mcp/main/docs/sources-app.png")
    assert (DOCS / "sources-app.png").is_file()


def test_each_readme_section_a_page_includes_is_there_once() -> None:
    readme = README.read_text()
    for page in DOCS.glob("*.md"):
        for name in re.findall(r'^--8<-- "README\.md:([a-z0-9-]+)"$', page.read_text(), re.M):
            assert readme.count(f"<!-- --8<-- [start:{name}] -->") == 1, (page.name, name)
            assert readme.count(f"<!-- --8<-- [end:{name}] -->") == 1, (page.name, name)


# --- The tools reference: tools/list itself.


def _annotations(hints: dict[str, Any]) -> str:
    """The hints as the README's tools table says them."""
    hints = SPEC_DEFAULTS | hints
    if hints["readOnlyHint"]:
        return "read-only"
    said = "destructive" if hints["destructiveHint"] else "write"
    return said + (", idempotent" if hints["idempotentHint"] else "")


def _type(schema: dict[str, Any]) -> str:
    """A schema node in words: its type and the bounds a caller must keep to."""
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = str(schema.get("type", "any"))
    low, high = {
        "integer": ("minimum", "maximum"),
        "number": ("minimum", "maximum"),
        "string": ("minLength", "maxLength"),
        "object": ("minProperties", "maxProperties"),
        "array": ("minItems", "maxItems"),
    }.get(kind, ("", ""))
    unit = {"string": " characters", "object": " keys", "array": " items"}.get(kind, "")
    if low in schema and high in schema:
        kind += f", {schema[low]:,} to {schema[high]:,}{unit}"
    elif high in schema:
        kind += f", at most {schema[high]:,}{unit}"
    elif low in schema:
        kind += f", at least {schema[low]:,}{unit}"
    if "pattern" in schema:
        kind += f", matching `{schema['pattern']}`"
    return kind


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def tools_reference(tools: list[dict[str, Any]]) -> str:
    """The reference part of docs/tools.md, from tools/list as a client receives it."""
    out = []
    for tool in tools:
        hints = tool.get("annotations", {})
        title = hints.get("title", tool["name"])
        out += [f"### `{tool['name']}`", "", f"**{title}**: {_annotations(hints)}."]
        out += ["", tool["description"].strip(), ""]
        schema = tool["inputSchema"]
        required = set(schema.get("required", []))
        if schema["properties"]:
            out += ["| argument | type | default | what it is |", "| --- | --- | --- | --- |"]
            for name, prop in schema["properties"].items():
                default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
                default = "required" if name in required else default
                said = _cell(prop.get("description", ""))
                out.append(f"| `{name}` | {_cell(_type(prop))} | {default} | {said} |")
        else:
            out.append("No arguments.")
        returned = tool.get("outputSchema", {}).get("properties", {})
        fields = ", ".join(f"`{name}` ({_type(prop)})" for name, prop in returned.items())
        out += ["", f"Returns in `structuredContent`: {fields}.", ""]
    return "\n".join(out)


async def test_the_tools_reference_is_tools_list(client: Client) -> None:
    """Regenerate deliberately with CENSUS_MCP_UPDATE_SNAPSHOTS=1 and review the diff."""
    listed = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed.tools]
    page = TOOLS_PAGE.read_text()
    head, rest = page.split(BEGIN, 1)
    written = rest.split(END, 1)[0]
    generated = tools_reference(tools)
    if os.environ.get("CENSUS_MCP_UPDATE_SNAPSHOTS") == "1":
        TOOLS_PAGE.write_text(head + BEGIN + generated + END + rest.split(END, 1)[1])
        written = generated
    assert written == generated, "docs/tools.md is not tools/list: CENSUS_MCP_UPDATE_SNAPSHOTS=1 rewrites it"
    # The README's table says the same hints in words.
    rows = [line for line in section(README.read_text(), "Tools").splitlines() if line.startswith("| `")]
    said = {row.split(" | ")[0].strip("| `"): row.rstrip(" |").rsplit(" | ", 1)[1] for row in rows}
    assert said == {tool["name"]: _annotations(tool.get("annotations", {})) for tool in tools}


# --- The command line, as the docs show it.


def _run(line: str) -> subprocess.CompletedProcess[str]:
    """A line of the docs through bash, census-mcp being the installed script, on a fresh sandbox."""
    return subprocess.run(
        [BASH, "-c", re.sub(r"^census-mcp\b", _console_script(), line)],
        env=_environment(CENSUS_MCP_SANDBOX="1"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_line_of_the_command_line_block_runs_as_written() -> None:
    """On the sandbox (the reader's token stands in the environment), each command does what its
    comment says: no error, and what it prints is what it is said to print."""
    commands = [line.split("  #")[0].strip() for line in block_tested_as("command-line").splitlines()]
    with ThreadPoolExecutor(max_workers=2) as pool:  # each is a process of its own: two at once
        runs = dict(zip(commands, pool.map(_run, commands), strict=True))
    for command, done in runs.items():
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    said = {command: done.stdout for command, done in runs.items()}
    assert said["census-mcp"] == ""  # the stdio server, its input closed: it serves nothing and stops
    assert "list_sources" in said["census-mcp tools"]
    assert "census-mcp call create_source" in said["census-mcp tools create_source"]
    assert json.loads(said["census-mcp tools --json"])["tools"][0]["name"] == "list_sources"
    assert said["""census-mcp call get_source '{"source_id": 2}'"""].startswith("Source #2 ")
    assert json.loads(said["census-mcp call list_sources '{}' --json"])["isError"] is False
    assert "ok    Census: the token was accepted" in said["census-mcp doctor"]
    assert json.loads(said["census-mcp doctor --json"])
    assert set(said) == set(commands)


def test_the_doctor_sample_is_what_doctor_prints() -> None:
    [command, *shown] = block_tested_as("doctor-sample").splitlines()
    done = _run(command.removeprefix("$ "))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    # The clock line's figure is the one thing that moves from run to run.
    clock = re.compile(r"^ok    clock: \d+ s (ahead of|behind) Census$")
    assert len(printed) == len(shown)
    for line, sample in zip(printed, shown, strict=True):
        assert line == sample or (clock.match(line) and clock.match(sample)), (line, sample)
