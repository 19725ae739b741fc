"""Request bodies of the order API, validated with pydantic; errors name their field.

Integers are strict ("2" is not a quantity) and unknown fields are refused, so a typo
comes back as a precise 422 instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_QUANTITY = 100
MAX_LINES = 50

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
StrictCount = Annotated[int, Field(strict=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(Strict):
    name: Name
    phone: str

    @field_validator("phone")
    @classmethod
    def phone_number(cls, value: str) -> str:
        return normalize_phone(value)


class OrderLineIn(Strict):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class OrderIn(Strict):
    customer: CustomerIn
    items: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]
    coupon_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = (
        None
    )


class ProductIn(Strict):
    sku: Sku
    name: Name
    price_cents: Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
    stock: Annotated[int, Field(strict=True, ge=0, le=1_000_000)]


class StockIn(Strict):
    stock: Annotated[int, Field(strict=True, ge=0, le=1_000_000)]


def normalize_phone(value: str) -> str:
    """'+49 (30) 123-4567' -> '+49301234567'; 7 to 15 digits, an optional leading +."""
    compact = re.sub(r"[\s().-]", "", value)
    if not re.fullmatch(r"\+?\d{7,15}", compact):
        raise ValueError("must be a phone number of 7 to 15 digits, optionally starting with +")
    return compact


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as CONTRACT.md's [{field: 'items[0].quantity', message}]."""
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
