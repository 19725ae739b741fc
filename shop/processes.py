"""Every process of the shop: what `shop up` starts and `shop run NAME` runs.

The web app runs under gunicorn; every other process is `python -m shop run NAME`, which
looks NAME up in RUNNABLES below.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from coupon_service import main as coupon_main
from inventory_service import main as inventory_main
from messaging.settings import Settings
from notification_service import main as notification_main
from order_service import main as order_main

Runnable = Callable[[Settings, threading.Event], None]

RUNNABLES: dict[str, tuple[str, Runnable]] = {
    # name: (service, function); each runs its relay and consumers as threads
    "order": ("order_service", order_main.run),
    "inventory": ("inventory_service", inventory_main.run),
    "coupon": ("coupon_service", coupon_main.run),
    "notification": ("notification_service", notification_main.run),
}

# Each service's database variable, and its migration environment.
SERVICE_DATABASES: dict[str, Callable[[Settings], str]] = {
    "order_service": lambda settings: settings.order_database_url,
    "inventory_service": lambda settings: settings.inventory_database_url,
    "coupon_service": lambda settings: settings.coupon_database_url,
    "notification_service": lambda settings: settings.notification_database_url,
}

WEB_WORKERS = 2
WEB_THREADS = 8


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]


def process_specs(settings: Settings) -> list[ProcessSpec]:
    web = ProcessSpec(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{settings.http_host}:{settings.http_port}",
            "--workers",
            str(WEB_WORKERS),
            "--worker-class",
            "gthread",  # threads: a request waiting on a publisher confirm blocks no other
            "--threads",
            str(WEB_THREADS),
            "--access-logfile",
            "-",
            "--access-logformat",
            "%(m)s %(U)s%(q)s -> %(s)s in %(M)sms",
            "--graceful-timeout",
            "10",
            "--no-control-socket",  # one fixed socket path per user: two shops would clash
            "order_service.app:create_app()",
        ],
    )
    others = [ProcessSpec(name, [sys.executable, "-m", "shop", "run", name]) for name in RUNNABLES]
    return [web, *others]
