"""What the `shop` subcommands share: the admin token, and the one line a missing broker
is told with."""

from __future__ import annotations

import secrets
from pathlib import Path

from shop.catalog import ShopSettings

ADMIN_TOKEN_FILE = Path("var/admin-token")


def broker_help(error: Exception) -> str:
    return (
        f"shop: {error}. Start one with `docker compose up -d rabbitmq`, or install your "
        "distribution's `rabbitmq-server` package and start it; or set AMQP_URL."
    )


def admin_token(settings: ShopSettings) -> str:
    """SHOP_ADMIN_TOKEN, or the one in var/admin-token, made on first use."""
    configured = settings.of("order").admin_token  # type: ignore[attr-defined]
    if configured:
        return configured
    if ADMIN_TOKEN_FILE.exists():
        return ADMIN_TOKEN_FILE.read_text().strip()
    ADMIN_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    ADMIN_TOKEN_FILE.write_text(token + "\n")
    ADMIN_TOKEN_FILE.chmod(0o600)
    return token
