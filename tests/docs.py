"""The README and the docs pages as the tests read them: their sections, their fenced blocks, and the
mark each shell block carries on the line before it: `<!-- tested: NAME -->`, for a block a test
fetches with `block_tested_as("NAME")` and runs, or `<!-- illustrative: why -->`."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})

_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
_MARK = re.compile(r"<!-- (?:tested: (?P<tested>[a-z0-9-]+)|illustrative: \S.*) -->")
# A docs page takes a README section with a line of its own: --8<-- "README.md:section".
_SNIPPET = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::(?P<section>[a-z0-9-]+))?"$', re.M)


def pages() -> list[Path]:
    """What the tests hold to the conventions: the README and every docs page."""
    return [README, *sorted(DOCS.glob("*.md"))]


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def expanded(page: Path) -> str:
    """A page as the site shows it: each snippet line replaced by the file, or its section, it names."""

    def include(match: re.Match[str]) -> str:
        text = (ROOT / match["path"]).read_text()
        if match["section"] is None:
            return text
        name = match["section"]
        start, end = f"<!-- --8<-- [start:{name}] -->\n", f"<!-- --8<-- [end:{name}] -->"
        return text.split(start, 1)[1].split(end, 1)[0]

    return _SNIPPET.sub(include, page.read_text())


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    """Without the indentation of the list item it may sit in."""
    mark: str
    """The line before the fence, stripped: a mark, or whatever stands there."""

    @property
    def is_shell(self) -> bool:
        """Commands to type: a shell language, or a console transcript (`$ command`)."""
        return self.language in SHELL_LANGUAGES or (not self.language and self.body.startswith("$ "))

    @property
    def tested_as(self) -> str | None:
        """The name a test fetches this block by, if it is marked tested."""
        marked = _MARK.fullmatch(self.mark)
        return marked["tested"] if marked else None

    @property
    def is_marked(self) -> bool:
        return _MARK.fullmatch(self.mark) is not None


def blocks(page: Path) -> list[Block]:
    """Every fenced block of `page` as written (a docs page's included README sections are the
    README's blocks, not its own)."""
    text = page.read_text()
    found = []
    for fence in _FENCE.finditer(text):
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, fence.start()) + 1
        body = textwrap.dedent(fence["body"])
        found.append(Block(page, line, fence["language"], body, before))
    return found


def block_tested_as(name: str) -> str:
    """The shell block marked `<!-- tested: name -->`. A block shown in several places carries the same
    name in each, and every copy must be the same."""
    copies = {block.body for page in pages() for block in blocks(page) if block.tested_as == name}
    assert copies, f"no shell block is marked <!-- tested: {name} -->"
    assert len(copies) == 1, f"the blocks marked <!-- tested: {name} --> differ: {copies}"
    [body] = copies
    return body
