"""The order service's door to the coupon service: RPC on `coupons.rpc`.

`CouponDesk` keeps one RPC client per thread (a pika connection must not be shared
between threads; gunicorn's threads and the flash-sale worker each get their own) and
turns replies into answers or the refusals of order_service/errors.py. Unit tests hand it
a fake client (`make_client`), so the rules run without a broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from messaging.rpc import RpcClient, RpcTimeout
from order_service.errors import CouponRefused, CouponServiceUnavailable

RPC_QUEUE = "coupons.rpc"  # the coupon service's queue (CONTRACT.md)


class Caller(Protocol):
    def call(self, queue: str, request_type: str, body: dict[str, Any]) -> dict[str, Any]: ...


class CouponDesk:
    def __init__(
        self,
        amqp_url: str,
        timeout: float = 3.0,
        make_client: Callable[[], Caller] | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.timeout = timeout
        self._make_client = make_client or (
            lambda: RpcClient(self.amqp_url, app_id="order_service", timeout=self.timeout)
        )
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
            client = self._local.client = self._make_client()
        try:
            reply = client.call(RPC_QUEUE, request_type, body)
        except RpcTimeout as error:
            raise CouponServiceUnavailable(str(error)) from error
        if reply.get("ok"):
            return reply
        if reply.get("retry"):
            raise CouponServiceUnavailable(reply.get("error", "the coupon service failed"))
        raise CouponRefused(
            reply.get("error", "refused"),
            exists=reply.get("refused") == "exists",
            errors=reply.get("errors") or [],
        )
