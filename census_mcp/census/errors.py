"""One exception type per kind of Census failure.

Each message is written for the model that reads it: what went wrong, then what to
try next. Messages never carry the API token or request bodies, so an exception's
str() and repr() are safe to log.
"""

from __future__ import annotations


class CensusError(Exception):
    """Base of every failure talking to Census."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code})"


class CensusRequestError(CensusError):
    """400 or 422: Census rejected the request; its own message says why."""


class CensusAuthError(CensusError):
    """401: the token was rejected."""


class CensusForbiddenError(CensusError):
    """403: the token is valid but lacks access."""


class CensusNotFoundError(CensusError):
    """404: no such object. `hint` says what else the 404 may mean, when it is ambiguous."""

    def __init__(self, message: str, *, status_code: int | None = None, hint: str = "") -> None:
        super().__init__(message, status_code=status_code)
        self.hint = hint


class CensusUnavailableError(CensusError):
    """429 or 5xx: Census is busy or failing."""


class CensusConnectionError(CensusError):
    """No answer: a timeout or a failed connection."""


class CensusUnsendableError(CensusError):
    """The request never left this process: the HTTP client refused to write it (an illegal header
    value, say). Nothing reached Census, and repeating it cannot help; the message says what to fix."""


class CensusResponseError(CensusError):
    """A 2xx answer that is not the JSON Census documents."""


class CensusUnknownOutcomeError(CensusError):
    """A write that may or may not have reached Census: its answer was lost, so its outcome is unknown."""


class CensusConflictError(CensusError):
    """409: the request conflicts with the workspace's current state (e.g. a name already taken)."""


class CensusOperationUnavailableError(CensusError):
    """The operation does not exist on this API version (yet); the message says what to do instead."""


class CensusRetiredError(CensusError):
    """Census has retired this API version; the message says how to switch."""
