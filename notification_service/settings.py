"""What the notification service is configured with: its database, the broker, and where
SMS go (SMS_GATEWAY_URL; none: they are stored and logged)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from messaging.settings import EnvReader, ServiceSettings


@dataclass(frozen=True)
class NotificationSettings(ServiceSettings):
    DATABASE_VARIABLE: ClassVar[str] = "NOTIFICATION_DATABASE_URL"
    database_url: str = "sqlite:///var/notifications.db"
    sms_gateway_url: str | None = None

    @classmethod
    def own_settings(cls, env: EnvReader) -> dict[str, object]:
        return {"sms_gateway_url": env.optional_text("SMS_GATEWAY_URL")}
