"""Stand-ins for the broker's side of the order service, for unit tests that run its rules
without RabbitMQ: a publisher whose verdicts the test chooses, a broadcast listener the test
speaks through, and a coupon service that answers from a dict."""

from __future__ import annotations

from collections.abc import Callable

from messaging.connection import BrokerUnavailable
from messaging.envelope import Envelope
from messaging.publisher import Outcome, Outgoing
from order_service.errors import CouponRefused


class FakePublisher:
    """Confirms everything, unless told to refuse (`full`) or to be away (`down`)."""

    def __init__(self) -> None:
        self.published: list[Outgoing] = []
        self.full = False
        self.down = False

    def publish(self, outgoing: Outgoing, timeout: float = 2.0) -> Outcome:
        if self.down:
            raise BrokerUnavailable("the broker is unreachable; reconnecting")
        if self.full:
            return Outcome(False, "nacked by the broker")
        self.published.append(outgoing)
        return Outcome(True)

    def close(self) -> None:
        pass


class FakeListener:
    """What the gate would hear on its exclusive queue: the test calls `hear(envelope)`."""

    def __init__(self) -> None:
        self.on_event: Callable[[Envelope], None] | None = None

    def start(self, on_event: Callable[[Envelope], None]) -> None:
        self.on_event = on_event

    def hear(self, event_type: str, **body: object) -> None:
        assert self.on_event is not None, "the gate has not started listening"
        self.on_event(Envelope.new(event_type, dict(body), correlation_id="c", app_id="test"))

    def close(self) -> None:
        pass


class FakeCoupons:
    """Coupons by code: {code: discount in cents}; an unknown code is refused."""

    def __init__(self, discounts: dict[str, int]) -> None:
        self.discounts = discounts
        self.reserved: list[tuple[str, str]] = []

    def reserve(self, code: str, order_id: str, phone: str, subtotal_cents: int) -> int:
        if code not in self.discounts:
            raise CouponRefused("unknown coupon")
        self.reserved.append((code, order_id))
        return min(self.discounts[code], subtotal_cents)

    def quote(self, code: str, phone: str | None, subtotal_cents: int) -> dict:
        if code not in self.discounts:
            return {"valid": False, "discount_cents": 0, "reason": "unknown coupon"}
        return {"valid": True, "discount_cents": min(self.discounts[code], subtotal_cents)}

    def create(self, fields: dict) -> dict:
        raise NotImplementedError
