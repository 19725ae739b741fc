"""The commands the order service takes: the request bodies of its API, validated with
pydantic, and handed as they are to the use cases. Errors name their field.

Integers are strict ("2" is not a quantity) and unknown fields are refused, so a typo
comes back as a precise 422 instead of being silently ignored. The OpenAPI document
(web/openapi.py) describes the API with these same models.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
COUPON_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
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


class CouponIn(Strict):
    code: Annotated[str, StringConstraints(pattern=COUPON_CODE_PATTERN)] | None = None
    amount_off_cents: Annotated[int, Field(strict=True, ge=1, le=100_000_000)] | None = None
    percent_off: Annotated[int, Field(strict=True, ge=1, le=100)] | None = None
    min_subtotal_cents: Annotated[int, Field(strict=True, ge=0)] = 0
    expires_at: AwareDatetime | None = None
    customer_phone: str | None = None

    @field_validator("customer_phone")
    @classmethod
    def phone_number(cls, value: str | None) -> str | None:
        return None if value is None else normalize_phone(value)

    @model_validator(mode="after")
    def one_kind_of_discount(self) -> CouponIn:
        if (self.amount_off_cents is None) == (self.percent_off is None):
            raise ValueError("give exactly one of amount_off_cents and percent_off")
        return self


class FlashSaleIn(Strict):
    sku: Sku
    price_cents: Annotated[int, Field(strict=True, ge=0, le=100_000_000)]
    quota: Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def ends_after_it_starts(self) -> FlashSaleIn:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PurchaseIn(Strict):
    customer: CustomerIn


class CouponQuoteQuery(BaseModel):
    """Query parameters arrive as text, so numbers here are parsed, not strict."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = None
    subtotal_cents: Annotated[int, Field(ge=0, le=100_000_000)]

    @field_validator("phone")
    @classmethod
    def phone_number(cls, value: str | None) -> str | None:
        return None if not value else normalize_phone(value)


def normalize_phone(value: str) -> str:
    """'+49 (30) 123-4567' -> '+49301234567'; 7 to 15 digits, an optional leading +."""
    compact = re.sub(r"[\s().-]", "", value)
    if not re.fullmatch(r"\+?\d{7,15}", compact):
        raise ValueError("must be a phone number of 7 to 15 digits, optionally starting with +")
    return compact
