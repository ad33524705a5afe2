"""A simulated Census workspace (Sources API v1) for tests and benchmarks, served as an ASGI app."""

from census_mcp.sandbox.app import SANDBOX_TOKEN, RequestRecord, SandboxConfig, Workspace, create_sandbox_app
from census_mcp.sandbox.faults import FAULT_KINDS, FaultConfig

__all__ = [
    "FAULT_KINDS",
    "SANDBOX_TOKEN",
    "FaultConfig",
    "RequestRecord",
    "SandboxConfig",
    "Workspace",
    "create_sandbox_app",
]
