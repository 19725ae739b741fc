"""The order service's door to the coupon service: RPC on `coupons.rpc`.

`CouponDesk` keeps one RpcClient per thread (a pika connection must not be shared
between threads; gunicorn's threads and the flash-sale worker each get their own) and
turns replies into answers or the exceptions of `order_service.handlers`.
"""

from __future__ import annotations

import threading
from typing import Any

from messaging.rpc import RpcClient, RpcTimeout
from messaging.topology import COUPONS_RPC_QUEUE
from order_service.handlers import CouponRefused, CouponServiceUnavailable


class CouponDesk:
    def __init__(self, amqp_url: str, timeout: float = 3.0) -> None:
        self.amqp_url = amqp_url
        self.timeout = timeout
        self._local = threading.local()

    def quote(self, code: str, phone: str | None, subtotal_cents: int) -> dict[str, Any]:
        reply = self._call(
            "coupon.quote", {"code": code, "phone": phone, "subtotal_cents": subtotal_cents}
        )
        return {key: reply[key] for key in ("valid", "discount_cents", "reason") if key in reply}

    def reserve(self, code: str, order_id: str, phone: str, subtotal_cents: int) -> int:
        reply = self._call(
            "coupon.reserve",
            {"code": code, "order_id": order_id, "phone": phone, "subtotal_cents": subtotal_cents},
        )
        return int(reply["discount_cents"])

    def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._call("coupon.create", fields)["coupon"]

    def _call(self, request_type: str, body: dict[str, Any]) -> dict[str, Any]:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = RpcClient(
                self.amqp_url, app_id="order_service", timeout=self.timeout
            )
        try:
            reply = client.call(COUPONS_RPC_QUEUE, request_type, body)
        except RpcTimeout as error:
            raise CouponServiceUnavailable(str(error)) from error
        if reply.get("ok"):
            return reply
        if reply.get("retry"):
            raise CouponServiceUnavailable(reply.get("error", "the coupon service failed"))
        raise CouponRefused(
            reply.get("error", "refused"),
            status=int(reply.get("status", 422)),
            errors=reply.get("errors") or [],
        )
