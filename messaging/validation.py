"""pydantic errors in CONTRACT.md's shape: [{"field": "items[0].quantity", "message": ...}]."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": field_path(item["loc"]), "message": _message(item)}
        for item in error.errors(include_url=False)
    ]


def field_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _message(item: dict[str, Any]) -> str:
    kind = item["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "string_pattern_mismatch":
        return "must be 1 to 64 letters, digits, '.', '_' or '-'"
    if kind == "value_error":
        return str(item["ctx"]["error"])
    message: str = item["msg"]
    return message[0].lower() + message[1:]
