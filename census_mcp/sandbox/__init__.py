"""A simulated Census workspace (Sources API v1) for tests and benchmarks, served as an ASGI app."""

from census_mcp.sandbox.app import SANDBOX_TOKEN, RequestRecord, SandboxConfig, Workspace, create_sandbox_app

__all__ = ["SANDBOX_TOKEN", "RequestRecord", "SandboxConfig", "Workspace", "create_sandbox_app"]
