"""A simulated Census workspace (Sources API v1 and v2) for tests and benchmarks, served as an ASGI app."""

from census_mcp.sandbox.app import RequestRecord, SandboxConfig, Workspace, create_sandbox_app
from census_mcp.sandbox.faults import FAULT_KINDS, FaultConfig
from census_mcp.sandbox.versions import GROUPS, SANDBOX_PAT, SANDBOX_TOKEN, SANDBOX_TOKENS, V2_OPERATIONS

__all__ = [
    "FAULT_KINDS",
    "GROUPS",
    "SANDBOX_PAT",
    "SANDBOX_TOKEN",
    "SANDBOX_TOKENS",
    "V2_OPERATIONS",
    "FaultConfig",
    "RequestRecord",
    "SandboxConfig",
    "Workspace",
    "create_sandbox_app",
]
