"""Every process of the shop: what `shop up` starts and `shop run NAME` runs.

The web app runs under gunicorn (shop/web.py: the order service's app and the shop's
operations pages); every service of the catalog is `python -m shop run NAME`, which runs
its workers as threads (messaging/service.py).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from messaging.service import run_service
from shop.catalog import CATALOG, ShopSettings

WEB_WORKERS = 2
WEB_THREADS = 8


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]


def run(name: str, settings: ShopSettings, stop: threading.Event) -> None:
    """`shop run NAME`: the service's workers until `stop`."""
    service = CATALOG.get(name)
    run_service(service, settings.of(name), CATALOG.topology(settings), stop)


def process_specs(settings: ShopSettings) -> list[ProcessSpec]:
    order = settings.of("order")
    web = ProcessSpec(
        "web",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{order.http_host}:{order.http_port}",  # type: ignore[attr-defined]
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
            "shop.web:create_app()",
        ],
    )
    others = [
        ProcessSpec(name, [sys.executable, "-m", "shop", "run", name]) for name in CATALOG.names
    ]
    return [web, *others]
