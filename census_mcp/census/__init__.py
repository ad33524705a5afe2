"""The Census REST client: HTTP and the API, nothing of MCP."""
