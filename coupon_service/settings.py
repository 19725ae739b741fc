"""What the coupon service is configured with: its database, the broker, and how long a
coupon reserved over RPC waits for its order's `order.created` (rules.py says why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from messaging.settings import EnvReader, ServiceSettings


@dataclass(frozen=True)
class CouponSettings(ServiceSettings):
    DATABASE_VARIABLE: ClassVar[str] = "COUPON_DATABASE_URL"
    database_url: str = "sqlite:///var/coupons.db"
    reservation_ttl: float = 900.0  # seconds a reservation waits for its order.created

    @classmethod
    def own_settings(cls, env: EnvReader) -> dict[str, object]:
        return {
            "reservation_ttl": env.positive_number(
                "COUPON_RESERVATION_TTL_SECONDS", cls.reservation_ttl
            )
        }
