"""census-mcp: an MCP server for the sources of a Census (Fivetran Activations) workspace."""

__version__ = "0.1.0"
