"""The JSON the API answers with (CONTRACT.md's shapes), as pydantic models.

Each `*Out` model is both what a route returns (`ProductOut.of(product).json()`) and what
the OpenAPI document says it returns (web/openapi.py), so the two cannot drift apart.
A field that is None is left out where the contract says "optional" (`OMIT_IF_NONE`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from messaging.database import iso
from order_service.models import FlashSale, FlashTicket, Order, Product
from order_service.use_cases.flash_sales import sale_status


class Out(BaseModel):
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    def json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for name in self.OMIT_IF_NONE:
            if data.get(name) is None:
                data.pop(name, None)
        return data


class ProductOut(Out):
    sku: str
    name: str
    price_cents: int
    available: int

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls(
            sku=product.sku,
            name=product.name,
            price_cents=product.price_cents,
            available=product.available,
        )


class CustomerOut(BaseModel):
    name: str
    phone: str


class OrderItemOut(BaseModel):
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class TimelineEntryOut(BaseModel):
    event: str
    service: str
    at: str | None
    detail: str | None


class OrderOut(Out):
    id: str
    status: Literal["PENDING", "CONFIRMED", "REJECTED"]
    customer: CustomerOut
    items: list[OrderItemOut]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    coupon_code: str | None
    reject_reason: str | None
    created_at: str | None
    updated_at: str | None
    timeline: list[TimelineEntryOut]

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(
            id=order.id,
            status=order.status,  # type: ignore[arg-type]
            customer=CustomerOut(name=order.customer_name, phone=order.customer_phone),
            items=[
                OrderItemOut(
                    sku=line.sku,
                    name=line.name,
                    quantity=line.quantity,
                    unit_price_cents=line.unit_price_cents,
                )
                for line in order.lines
            ],
            subtotal_cents=order.subtotal_cents,
            discount_cents=order.discount_cents,
            total_cents=order.total_cents,
            coupon_code=order.coupon_code,
            reject_reason=order.reject_reason,
            created_at=iso(order.created_at),
            updated_at=iso(order.updated_at),
            timeline=[
                TimelineEntryOut(
                    event=entry.event, service=entry.service, at=iso(entry.at), detail=entry.detail
                )
                for entry in order.timeline
            ],
        )


class SaleOut(Out):
    OMIT_IF_NONE = frozenset({"note"})

    id: str
    sku: str
    price_cents: int
    quota: int
    sold: int
    remaining: int
    starts_at: str | None
    ends_at: str | None
    queue_limit: int
    status: Literal["upcoming", "open", "sold_out", "ended"]
    requested_quota: int
    allocation: Literal["pending", "held", "released"]
    note: str | None = None

    @classmethod
    def of(cls, sale: FlashSale, queue_limit: int, now: datetime) -> SaleOut:
        note = None
        if sale.allocation == "pending":
            note = "the sale opens once the inventory has set its units aside"
        elif sale.quota < sale.requested_quota:
            note = (
                f"the inventory could set aside {sale.quota} of the "
                f"{sale.requested_quota} units asked for"
            )
        return cls(
            id=sale.id,
            sku=sale.sku,
            price_cents=sale.price_cents,
            quota=sale.quota,
            sold=sale.sold,
            remaining=sale.quota - sale.sold,
            starts_at=iso(sale.starts_at),
            ends_at=iso(sale.ends_at),
            queue_limit=queue_limit,
            status=sale_status(sale, now),  # type: ignore[arg-type]
            requested_quota=sale.requested_quota,
            allocation=sale.allocation,  # type: ignore[arg-type]
            note=note,
        )


class TicketOut(Out):
    OMIT_IF_NONE = frozenset({"order_id", "reason"})

    ticket_id: str
    status: Literal["QUEUED", "WON", "LOST"]
    order_id: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, ticket_id: str, ticket: FlashTicket | None) -> TicketOut:
        """A decided ticket, or (None) one still waiting in the queue."""
        if ticket is None:
            return cls(ticket_id=ticket_id, status="QUEUED")
        return cls(
            ticket_id=ticket_id,
            status=ticket.status,  # type: ignore[arg-type]
            order_id=ticket.order_id or None,
            reason=ticket.reason or None,
        )


class TicketIssued(Out):
    ticket_id: str
    status: Literal["QUEUED"] = "QUEUED"
    status_url: str


def sale_view(sale: FlashSale, queue_limit: int, now: datetime) -> dict[str, Any]:
    """A sale as the API and the sale's page show it."""
    return SaleOut.of(sale, queue_limit, now).json()
