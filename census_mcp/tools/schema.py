"""Leaner JSON schemas for tools/list.

Clients put tools/list in front of the model on every turn, so each byte there costs
context. pydantic's schemas carry a title on every property and spell `X | None` as an
anyOf; this rewrites them to the same meaning in fewer bytes.
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
    for name, prop in compact["properties"].items():
        if name not in required and isinstance(prop.get("type"), list) and prop.get("default", None) is None:
            prop["type"] = next(kind for kind in prop["type"] if kind != "null")
            if "enum" in prop:
                prop["enum"] = [value for value in prop["enum"] if value is not None]
    return compact


def compact_schema(schema: Any) -> Any:
    """The same constraints, minus titles, null defaults, `additionalProperties: true` (the default)
    and nullable anyOf wrappers."""
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
    return _fold_nullable(out)


def _fold_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`{anyOf: [{type: T, ...}, {type: null}]}` as `{type: [T, null], ...}`."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or _NULL not in options:
        return schema
    (other,) = [option for option in options if option != _NULL]
    if not isinstance(other.get("type"), str):
        return schema
    folded = {**other, **{key: value for key, value in schema.items() if key != "anyOf"}}
    folded["type"] = [other["type"], "null"]
    if "enum" in other:
        folded["enum"] = [*other["enum"], None]
    return folded


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
    return {"type": unique[0] if len(unique) == 1 else unique}


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
