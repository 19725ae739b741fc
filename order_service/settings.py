"""What the order service is configured with: its database, the broker, where its web app
listens, the admin token, and the flash-sale queue's length limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from messaging.settings import EnvReader, ServiceSettings


@dataclass(frozen=True)
class OrderSettings(ServiceSettings):
    DATABASE_VARIABLE: ClassVar[str] = "ORDER_DATABASE_URL"
    database_url: str = "sqlite:///var/orders.db"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    admin_token: str | None = None
    flash_sale_queue_limit: int = 1000

    @classmethod
    def own_settings(cls, env: EnvReader) -> dict[str, object]:
        return {
            "http_host": env.text("SHOP_HTTP_HOST", cls.http_host),
            "http_port": env.positive_int("SHOP_HTTP_PORT", cls.http_port),
            "admin_token": env.optional_text("SHOP_ADMIN_TOKEN"),
            "flash_sale_queue_limit": env.positive_int(
                "FLASH_SALE_QUEUE_LIMIT", cls.flash_sale_queue_limit
            ),
        }
