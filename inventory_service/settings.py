"""What the inventory service is configured with: its database, and the broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from messaging.settings import ServiceSettings


@dataclass(frozen=True)
class InventorySettings(ServiceSettings):
    DATABASE_VARIABLE: ClassVar[str] = "INVENTORY_DATABASE_URL"
    database_url: str = "sqlite:///var/inventory.db"
