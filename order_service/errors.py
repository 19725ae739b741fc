"""What the order rules refuse, and why. No HTTP here: the web layer (web/problems.py)
decides what each refusal is answered with, and the order form shows it by its field."""

from __future__ import annotations


class DomainError(Exception):
    """A request the rules refuse; `errors` name the fields to fix, if any."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(DomainError):
    """No such product, order, sale or ticket."""


class Conflict(DomainError):
    """It exists already, or the request contradicts an earlier one."""


class InvalidOrder(DomainError):
    """The order (or sale) cannot be made as asked."""


class CouponRefused(DomainError):
    """The coupon service said no: the coupon does not do (`exists` False), or a coupon with
    that code exists already (`exists` True)."""

    def __init__(
        self, detail: str, *, exists: bool = False, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(detail, errors)
        self.exists = exists


class ServiceUnavailable(DomainError):
    """Something the request needs did not answer in time; nothing was changed."""


class CouponServiceUnavailable(ServiceUnavailable):
    """No answer from the coupon service in time."""
