"""Turning any failure of a tool call into an error a model can act on.

Every message says what went wrong and what to try next. It never carries a
traceback, and never the rejected argument values (they may hold credentials).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from census_mcp.census.errors import (
    CensusAuthError,
    CensusConflictError,
    CensusConnectionError,
    CensusError,
    CensusForbiddenError,
    CensusNotFoundError,
    CensusOperationUnavailableError,
    CensusRequestError,
    CensusResponseError,
    CensusRetiredError,
    CensusUnavailableError,
    CensusUnknownOutcomeError,
    CensusUnsendableError,
)
from census_mcp.untrusted import quote


def explain_census_error(exc: CensusError, tool_name: str, arguments: Mapping[str, Any]) -> str:
    """The model-facing text for a Census failure of a tool, given its (validated) arguments."""
    if isinstance(
        exc, CensusAuthError | CensusOperationUnavailableError | CensusRetiredError | CensusUnsendableError
    ):
        # The client wrote these with the version's own advice.
        return exc.message
    if isinstance(exc, CensusUnknownOutcomeError):
        return (
            f"The answer from Census was lost, so whether this took effect is unknown: {exc.message} "
            "Check before repeating it: a refresh is harmless to repeat, a create is not."
        )
    if isinstance(exc, CensusRequestError):
        said = _sentence(exc.message)
        return f"Census rejected the request ({exc.status_code}): {said} Correct the arguments and retry."
    if isinstance(exc, CensusConflictError):
        return (
            f"Census refused this because it conflicts with the workspace as it is now (409): "
            f"{_sentence(exc.message)} Check the current state with list_sources or get_source, then adjust."
        )
    if isinstance(exc, CensusForbiddenError):
        return (
            f"The API token lacks access to this ({exc.message}). Use a token that can reach these sources."
        )
    if isinstance(exc, CensusNotFoundError):
        return _not_found(exc, tool_name, arguments)
    if isinstance(exc, CensusUnavailableError):
        return f"Census is busy or failing: {_sentence(exc.message)} Wait a little, then try again."
    if isinstance(exc, CensusConnectionError):
        return (
            f"Could not reach Census: {exc.message} Check the network and CENSUS_API_BASE_URL "
            "(or CENSUS_REGION, on API v1)."
        )
    if isinstance(exc, CensusResponseError):
        return f"Census answered in an unexpected form: {exc.message} Try again; if it persists, report it."
    return f"Census call failed: {exc.message}"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", '."')) else text + "."


def _not_found(exc: CensusNotFoundError, tool_name: str, arguments: Mapping[str, Any]) -> str:
    source_id = arguments.get("source_id")
    if tool_name == "get_source_type":
        # Validated already: a lower-case name, given as `type` or by its old name.
        source_type = str(arguments.get("type", arguments.get("service_name"))).lower()
        return (
            f"Census has no source type named {source_type!r} (404). "
            "Call list_source_types for the types there are."
        )
    if source_id is None:
        return (
            f"Census has no such endpoint ({exc.message}). Check CENSUS_API_BASE_URL: "
            "it must be the full base, ending in /api/v1 or /api/v2."
        )
    if "refresh_key" in arguments:
        return (
            f"Census found no refresh job {arguments['refresh_key']} for source #{source_id} (404). "
            "Check both ids: refresh_source_tables returns the refresh_key, list_sources finds source ids"
            + (f"; {exc.hint}" if exc.hint else ".")
        )
    return (
        f"No source with id {source_id} exists, or the token cannot see it (404). "
        "Call list_sources to find source ids."
    )


_PROBLEMS_SHOWN = 5
_NAME_CHARS = 40


def explain_invalid_arguments(tool_name: str, exc: ValidationError) -> str:
    """Which arguments were wrong and why, without echoing the values given. An argument name the
    caller made up is cut short and quoted, as Census text is; a few problems are named, not all."""
    errors = exc.errors(include_input=False, include_url=False)
    problems = [f"{_where(error)}: {_reason(error)}" for error in errors[:_PROBLEMS_SHOWN]]
    more = f"; and {len(errors) - _PROBLEMS_SHOWN} more" if len(errors) > _PROBLEMS_SHOWN else ""
    return (
        f"Invalid arguments for {tool_name}: " + "; ".join(problems) + more + ". See the tool's input schema."
    )


def _where(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "arguments"
    return quote(where, _NAME_CHARS) if error["type"] == "extra_forbidden" else where


# What a value of a patterned argument looks like, in words rather than as a regular expression.
_FORMS = {
    "type": "a source type: letters, digits and _, such as snowflake or big_query (list_source_types has all)"
}


def _reason(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "not an argument of this tool"
    if error["type"] == "string_pattern_mismatch":
        return "must be " + _FORMS.get(str(error["loc"][-1]), "in the form the tool's input schema gives")
    return str(error["msg"])
