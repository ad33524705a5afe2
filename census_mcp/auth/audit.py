"""The audit trail: one JSON line for every attempt to change the workspace, whoever made it, in
every auth mode, whether it worked or not; with --audit-reads, for every call that reads too.

Security teams ask who deleted a source; a line here answers: when, which principal (an OAuth
subject and client, the shared token, a short digest of a passthrough token, or the local user of
a stdio server), which tool on which source, and the outcome (ok, refused, failed, or unknown when
Census's answer was lost) with Census's HTTP status. A line never holds a credential: it names
the source by id, type and label only, and the tokens are scrubbed from it by value as well.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from census_mcp.census.cache import token_digest
from census_mcp.census.errors import CensusError, CensusUnknownOutcomeError
from census_mcp.redaction import scrub
from census_mcp.settings import Settings
from census_mcp.tools.base import OutcomeUnknown, bearer_token
from census_mcp.untrusted import clean

Outcome = Literal["ok", "refused", "failed", "unknown"]
Event = Literal["census_write", "census_read"]


@dataclass(frozen=True)
class Principal:
    """Who made a call: `kind` is oauth, shared-token, passthrough or local."""

    kind: str
    subject: str | None = None
    client_id: str | None = None
    token_digest: str | None = None

    def as_json(self) -> dict[str, str]:
        fields = {
            "kind": self.kind,
            "sub": self.subject,
            "client_id": self.client_id,
            "token_digest": self.token_digest,
        }
        return {key: clean(value, 200) for key, value in fields.items() if value}


class AuditTrail:
    """Appends one line per write attempt (or read, with --audit-reads) to a stream (stderr, or a
    file opened for appending)."""

    def __init__(self, stream: TextIO | None, secrets: Iterable[str] = ()) -> None:
        self._stream = stream
        self._secrets = [secret for secret in secrets if secret]
        self._lock = threading.Lock()

    @classmethod
    def to(cls, path: Path | None, secrets: Iterable[str] = (), *, or_stderr: bool = True) -> AuditTrail:
        """To a file (appended to, one write per line, so workers sharing it do not interleave), else to
        stderr, or with `or_stderr` off nowhere: a one-off `census-mcp call` prints only its result."""
        if path is not None:
            return cls(path.open("a", encoding="utf-8", buffering=1), secrets)
        return cls(sys.stderr if or_stderr else None, secrets)

    def record(
        self,
        *,
        event: Event = "census_write",
        principal: Principal,
        tool: str,
        arguments: dict[str, Any],
        outcome: Outcome,
        census_status: int | None = None,
        source_id: int | None = None,
    ) -> None:
        if self._stream is None:
            return
        given = arguments.get("source_id")
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "principal": principal.as_json(),
            "tool": tool,
            "source_id": source_id if source_id is not None else given if _is_id(given) else None,
            "type": _text(arguments.get("type")),
            "label": _text(arguments.get("label")),
            "outcome": outcome,
            "census_status": census_status,
        }
        text = scrub(json.dumps(line, ensure_ascii=False), self._secrets)
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()


def principal_of(settings: Settings, headers: Mapping[str, str] | None) -> Principal:
    """Who is calling, as far as this server can tell, never holding a credential."""
    if settings.transport != "http":
        return Principal("local")
    if settings.no_auth:
        return Principal("anonymous")
    if settings.oauth:
        return oauth_principal(get_access_token())
    if settings.passthrough:
        presented = bearer_token((headers or {}).get("authorization", ""))
        return Principal("passthrough", token_digest=token_digest(presented)[:12] if presented else None)
    return Principal("shared-token")


def oauth_principal(token: AccessToken | None) -> Principal:
    """A signed-in caller: the token's subject and client."""
    if token is None:
        return Principal("oauth")
    return Principal("oauth", subject=token.subject, client_id=token.client_id)


def outcome_of_failure(cause: BaseException | None) -> tuple[Outcome, int | None]:
    """How a write that raised ended, and Census's status: unknown when its answer was lost; failed
    when Census refused it or could not be reached; refused when this server would not send it
    (invalid arguments, the name guard, a declined confirmation)."""
    if isinstance(cause, CensusUnknownOutcomeError | OutcomeUnknown):
        return "unknown", cause.status_code if isinstance(cause, CensusError) else None
    if isinstance(cause, CensusError):
        return "failed", cause.status_code
    return "refused", None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    return clean(value, 120) if isinstance(value, str) else None
