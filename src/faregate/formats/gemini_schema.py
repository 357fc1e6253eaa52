"""JSON Schema as Gemini's ``Schema`` (the OpenAPI 3.0 subset ``parameters`` and ``responseSchema``
take). Pure.

Google documents the fields it reads (type, format, title, description, nullable, enum, items,
minItems, maxItems, properties, required, minProperties, maxProperties, minLength, maxLength,
pattern, minimum, maximum, anyOf, propertyOrdering, default, example); the Gemini API refuses
other keywords (``Invalid JSON payload received. Unknown name "additionalProperties"``). So:
- ``$ref`` to ``$defs`` / ``definitions`` is inlined (a reference to itself, recursion, stops at
  ``MAX_DEPTH`` as a bare object); ``oneOf`` becomes ``anyOf``; ``allOf`` of objects is merged.
- A ``type`` list (``["string", "null"]``) and a ``{"type": "null"}`` member of ``anyOf`` become
  ``nullable``; ``const`` becomes a one-value ``enum``; enum values are written as strings (Gemini
  enums are strings); an enum on another type is said in its description instead.
- ``format`` is kept only where Gemini knows it (enum and date-time on strings, int32/int64,
  float/double); other keywords (``additionalProperties``, ``$schema``, ``examples``,
  ``exclusiveMinimum``, ``not``...) are left out: they constrain nothing Gemini can enforce.
- An object with no properties keeps no ``properties`` (Gemini refuses an empty map there).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
_TYPES = {"string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN", "array": "ARRAY", "object": "OBJECT"}
_FORMATS = {"STRING": {"enum", "date-time"}, "INTEGER": {"int32", "int64"}, "NUMBER": {"float", "double"}}
_KEPT = ("title", "description", "pattern", "default", "example")
_COUNTS = ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength")
_BOUNDS = ("minimum", "maximum")


def to_gemini(schema: Any) -> dict[str, Any]:
    """``schema`` (JSON Schema, as a client sent it) as a Gemini Schema object."""
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _convert(schema, defs, 0)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    target = defs.get(ref)
    if not isinstance(target, dict):
        return {k: v for k, v in schema.items() if k != "$ref"}
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def _merged(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``allOf`` folded into one schema (properties and required lists joined)."""
    parts = schema.get("allOf")
    if not isinstance(parts, list):
        return schema
    out = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        if not isinstance(part, dict):
            continue
        part = _resolve(part, defs)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                out["properties"] = {**out.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                out["required"] = [*out.get("required", []), *(r for r in value if r not in out.get("required", []))]
            else:
                out.setdefault(key, value)
    return out


def _convert(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {"type": "OBJECT"}
    schema = _merged(_resolve(schema, defs), defs)
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if k != "null"]
        if len(named) < len(kind):
            out["nullable"] = True
        kind = named[0] if len(named) == 1 else None
        if len(named) > 1:
            out["anyOf"] = [{"type": _TYPES[k]} for k in named if k in _TYPES]
    if kind == "null":
        out["nullable"] = True
    elif isinstance(kind, str) and kind in _TYPES:
        out["type"] = _TYPES[kind]
    choices = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(choices, list):
        members = [c for c in choices if isinstance(c, dict)]
        if any(c.get("type") == "null" for c in members):
            out["nullable"] = True
            members = [c for c in members if c.get("type") != "null"]
        converted = [_convert(c, defs, depth + 1) for c in members]
        if len(converted) == 1:
            out = {**converted[0], **out}
        elif converted:
            out["anyOf"] = converted
    for key in _KEPT:
        if key in schema:
            out[key] = schema[key]
    for key in _COUNTS:
        if isinstance(schema.get(key), int) and not isinstance(schema.get(key), bool):
            out[key] = schema[key]
    for key in _BOUNDS:
        if isinstance(schema.get(key), int | float) and not isinstance(schema.get(key), bool):
            out[key] = schema[key]
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(values, list) and values:
        if out.setdefault("type", "STRING") == "STRING":
            out["enum"], out["format"] = [v if isinstance(v, str) else _text(v) for v in values], "enum"
        else:  # Gemini enums are strings only: the allowed values are said in words
            allowed = "one of: " + ", ".join(_text(v) for v in values)
            out["description"] = f"{out['description']} ({allowed})" if out.get("description") else allowed
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out.setdefault("format", fmt)
    items = schema.get("items")
    if isinstance(items, dict):
        out["items"] = _convert(items, defs, depth + 1)
    properties = schema.get("properties")
    if isinstance(properties, dict) and properties:
        out["properties"] = {name: _convert(sub if isinstance(sub, dict) else {}, defs, depth + 1) for name, sub in properties.items()}
        required = schema.get("required")
        if isinstance(required, list):
            out["required"] = [name for name in required if name in properties]
        ordering = schema.get("propertyOrdering")
        if isinstance(ordering, list):
            out["propertyOrdering"] = ordering
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
