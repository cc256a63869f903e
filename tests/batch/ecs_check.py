"""Check a document against the ECS field definitions (tests/batch/data, from elastic/ecs)."""

from __future__ import annotations

import datetime as _dt
from functools import cache
from typing import Any

from tests.batch.ecs_fields import load

#: ECS types whose values are JSON strings
_STRINGS = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword", "ip",
            "version"}
#: kvmfx's own namespace (ECS: custom fields go outside the ECS field sets)
CUSTOM = "kvmfx"


@cache
def fields() -> dict[str, Any]:
    return load()


def _leaves(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in fields():
            out.extend(_leaves(value, name + "."))
        else:
            out.append((name, value))
    return out


def _type_ok(kind: str, value: Any) -> bool:
    if kind in _STRINGS:
        return isinstance(value, str)
    if kind in ("long", "integer", "short", "byte", "unsigned_long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "scaled_float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        if not isinstance(value, str):
            return False
        try:
            when = _dt.datetime.fromisoformat(value)
        except ValueError:
            return False
        return when.tzinfo is not None
    if kind in ("object", "flattened", "nested"):
        return isinstance(value, dict | list)
    return False


def problems(doc: dict[str, Any]) -> list[str]:
    """What in ``doc`` is not ECS: unknown field names, wrong types, values not allowed."""
    out = []
    for name, value in _leaves(doc):
        if name.split(".")[0] == CUSTOM:
            continue
        field = fields().get(name)
        if field is None:
            out.append(f"{name}: not an ECS field")
            continue
        array = "array" in field.get("normalize", [])
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not array and field["type"] not in ("object", "nested"):
            out.append(f"{name}: a list, but the field is not an array")
        for v in values:
            if not _type_ok(field["type"], v):
                out.append(f"{name}: {v!r} is not {field['type']}")
            allowed = field.get("allowed_values")
            if allowed and v not in allowed:
                out.append(f"{name}: {v!r} not one of {allowed}")
    if "@timestamp" not in doc:
        out.append("@timestamp missing")
    return out
