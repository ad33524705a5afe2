"""Leaner, portable JSON schemas for tools/list.

Clients put tools/list in front of the model on every turn, so each byte there costs
context. pydantic's schemas carry a title on every property; this drops what says nothing.
Every schema keeps to one `type` per node (nullable values as `anyOf` branches), the spelling
that clients mapping schemas onto a single-type dialect (such as Gemini's) accept.
"""

from __future__ import annotations

import math
from typing import Any

_NULL = {"type": "null"}


def compact_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema, compacted; an optional argument is simply left out, so it need not admit null.

    The server still accepts an explicit null for it: validation uses the full model.
    """
    compact: dict[str, Any] = compact_schema(schema)
    required = set(compact.get("required", []))
    properties = compact["properties"]
    for name, prop in properties.items():
        if name not in required and prop.get("default", None) is None:
            properties[name] = _without_null(prop)
    return compact


def compact_schema(schema: Any) -> Any:
    """The same constraints, minus titles, null defaults and `additionalProperties: true` (the default)."""
    if isinstance(schema, list):
        return [compact_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            # Keys here are names, not keywords: a property may be called "title".
            out[key] = {name: compact_schema(sub) for name, sub in value.items()}
        elif key != "title" and (key, value) not in (("default", None), ("additionalProperties", True)):
            out[key] = compact_schema(value)
    return out


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`{anyOf: [{...}, {type: null}], ...}` as its one non-null branch, with the outer keys kept."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or _NULL not in options:
        return schema
    (other,) = [option for option in options if option != _NULL]
    return {**other, **{key: value for key, value in schema.items() if key != "anyOf"}}


def outline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its top level: each field's name and JSON type.

    Fields are always present in a result, so `required` would only repeat the names.

    The model reads a result's text, and a program reads its keys; the nested detail
    would cost every turn's context and tell neither much. Results are still validated
    against the full model on the server before they are sent.
    """
    properties = {
        name: _outline(prop, schema.get("$defs", {})) for name, prop in schema["properties"].items()
    }
    return {"type": "object", "properties": properties}


def _outline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    types: list[str] = []
    for option in prop.get("anyOf", [prop]):
        target = defs.get(option["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in option else option
        kind = target.get("type", "object")
        types.extend(kind if isinstance(kind, list) else [kind])
    unique = list(dict.fromkeys(types))
    if len(unique) == 1:
        return {"type": unique[0]}
    return {"anyOf": [{"type": kind} for kind in unique]}


# Bounds on a call's arguments, checked before any validation, far above what a real call sends: the
# largest, a create with 100 credential fields, has about 105 keys, depth 2 and a private key of 4 KB.
MAX_ARGUMENT_ITEMS = 500
MAX_ARGUMENT_DEPTH = 8
MAX_ARGUMENT_KEY_CHARS = 256
MAX_ARGUMENT_STRING_CHARS = 64 * 1024
MAX_ARGUMENT_CHARS = 256 * 1024


def argument_bounds_problem(arguments: Any) -> str | None:
    """What makes a call's arguments larger than any call needs, or None.

    It stops at the first bound crossed, so its time does not grow with the input: a request of
    100,000 keys costs no more to refuse than one of 501.
    """
    items = chars = 0
    pending: list[tuple[Any, int]] = [(arguments, 0)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_ARGUMENT_DEPTH:
            return f"nested deeper than {MAX_ARGUMENT_DEPTH} levels"
        if isinstance(value, dict):
            items += len(value)
            if items > MAX_ARGUMENT_ITEMS:
                return f"more than {MAX_ARGUMENT_ITEMS} keys and items in all"
            for key, item in value.items():
                if len(key) > MAX_ARGUMENT_KEY_CHARS:
                    return f"an argument name longer than {MAX_ARGUMENT_KEY_CHARS} characters"
                chars += len(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            items += len(value)
            if items > MAX_ARGUMENT_ITEMS:
                return f"more than {MAX_ARGUMENT_ITEMS} keys and items in all"
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            if len(value) > MAX_ARGUMENT_STRING_CHARS:
                return f"a text value longer than {MAX_ARGUMENT_STRING_CHARS:,} characters"
            chars += len(value)
        if chars > MAX_ARGUMENT_CHARS:
            return f"more than {MAX_ARGUMENT_CHARS:,} characters in all"
    return None


def require_plain_json(value: Any) -> None:
    """Refuse what JSON cannot carry to Census: text that is not Unicode (lone surrogates) and
    numbers that are not finite. Raised as ValueError, so it reads as an invalid argument."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (it holds a lone surrogate)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (not NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            require_plain_json(key)
            require_plain_json(item)
    elif isinstance(value, list | tuple):
        for item in value:
            require_plain_json(item)
