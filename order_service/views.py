"""JSON shapes of CONTRACT.md for products and orders."""

from __future__ import annotations

from datetime import datetime

from messaging.database import as_utc
from order_service.models import Order, Product


def iso(moment: datetime | None) -> str | None:
    utc = as_utc(moment)
    return None if utc is None else utc.isoformat().replace("+00:00", "Z")


def product_json(product: Product) -> dict[str, object]:
    return {
        "sku": product.sku,
        "name": product.name,
        "price_cents": product.price_cents,
        "available": product.available,
    }


def order_json(order: Order) -> dict[str, object]:
    return {
        "id": order.id,
        "status": order.status,
        "customer": {"name": order.customer_name, "phone": order.customer_phone},
        "items": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
            }
            for line in order.lines
        ],
        "subtotal_cents": order.subtotal_cents,
        "discount_cents": order.discount_cents,
        "total_cents": order.total_cents,
        "coupon_code": order.coupon_code,
        "reject_reason": order.reject_reason,
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
        "timeline": [
            {
                "event": entry.event,
                "service": entry.service,
                "at": iso(entry.at),
                "detail": entry.detail,
            }
            for entry in order.timeline
        ],
    }
