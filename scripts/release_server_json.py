"""server.json as a release publishes it to the MCP Registry.

The registry takes an `mcpb` package only with the SHA-256 of the file a client downloads, and that
file exists only once the release workflow has built it: this fills it in, and refuses a bundle that
is not the one server.json names (another version's, say).

    python scripts/release_server_json.py server.json dist/census-mcp-0.2.0.mcpb > dist/server.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def with_bundle_digest(server: dict[str, Any], bundle: Path) -> dict[str, Any]:
    """`server` with its one `mcpb` package's `fileSha256` set from `bundle`."""
    [entry] = [package for package in server["packages"] if package["registryType"] == "mcpb"]
    named = Path(urlsplit(entry["identifier"]).path).name
    if bundle.name != named:
        raise SystemExit(f"{bundle.name} is not the bundle server.json names ({named})")
    entry["fileSha256"] = hashlib.sha256(bundle.read_bytes()).hexdigest()
    return server


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit("usage: release_server_json.py SERVER_JSON BUNDLE")
    server = json.loads(Path(argv[0]).read_text())
    print(json.dumps(with_bundle_digest(server, Path(argv[1])), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
