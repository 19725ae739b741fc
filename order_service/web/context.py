"""What the web app's routes share, made once by create_app() (app.py): settings, the
database engine and sessions, the coupon service's desk, the flash-sale gate, the ticket
signer. A route reaches it with `web()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from order_service.settings import OrderSettings
from order_service.tickets import TicketSigner
from order_service.use_cases.orders import Coupons
from order_service.web.admission import AdmissionGate


class CouponService(Coupons, Protocol):
    """What the routes ask of the coupon service (order_service/coupon_client.CouponDesk)."""

    def quote(self, code: str, phone: str | None, subtotal_cents: int) -> dict: ...

    def create(self, fields: dict) -> dict: ...


@dataclass(frozen=True)
class WebContext:
    settings: OrderSettings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]  # for reads: on SQLite they take no write lock
    coupons: CouponService
    flash_sales: AdmissionGate
    tickets: TicketSigner


EXTENSION = "shop"


def web() -> WebContext:
    """The app's wiring, made by create_app()."""
    return current_app.extensions[EXTENSION]
