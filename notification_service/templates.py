"""The SMS texts, one per event type. Short: an SMS is 160 characters."""

from __future__ import annotations

from typing import Any


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def order_confirmed(body: dict[str, Any]) -> str:
    total = money(int(body.get("total_cents", 0)))
    return f"Your order {body['order_id'][:8]} is confirmed. Total {total}. Thank you!"


def order_rejected(body: dict[str, Any]) -> str:
    reason = body.get("reason") or "it could not be fulfilled"
    return f"Sorry, your order {body['order_id'][:8]} was not accepted: {reason}."


def coupon_issued(body: dict[str, Any]) -> str:
    off = f"{body['percent_off']}%" if body.get("percent_off") else money(body["amount_off_cents"])
    return f"A gift for your next order: coupon {body['code']} takes {off} off."


TEMPLATES = {
    "order.confirmed": order_confirmed,
    "order.rejected": order_rejected,
    "coupon.issued": coupon_issued,
}
