"""census-mcp: an MCP server for the sources of a Census (Fivetran Activations) workspace."""

from importlib.metadata import version

# One version, pyproject.toml's, as the installed package's metadata has it: `--version`, /healthz
# and the server's own name in `initialize` cannot disagree with the release.
__version__ = version("census-mcp")
