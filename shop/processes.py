"""Every process of the shop: what `shop up` starts and `shop run NAME` runs.

The web app runs under gunicorn (shop/web.py: the order service's app and the shop's
operations pages); every service of the catalog is `python -m shop run NAME`, which runs
its workers as threads (messaging/service.py).

`shop up --scale inventory=2,web=4` runs replicas: N processes of a service (`inventory`,
`inventory-2`, ...), competing for its queues and sharing its outbox, or N gunicorn
workers. Replicas need PostgreSQL: a SQLite database has one writer at a time, and its
relay takes no lease (messaging/relay.py), so two relays on one file would publish every
event twice; `replica_problem()` says so instead of starting them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import make_url

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


class ScaleError(ValueError):
    """A --scale the shop cannot run; the message says why and what to do."""


def parse_scale(text: str) -> dict[str, int]:
    """ "inventory=2,web=4" -> {"inventory": 2, "web": 4}; ScaleError naming what is wrong."""
    known = ["web", *CATALOG.names]
    scale: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, count = item.partition("=")
        if not equals or name not in known or not count.isdigit() or int(count) < 1:
            raise ScaleError(
                f"--scale takes NAME=N[,NAME=N] with N >= 1 and NAME one of "
                f"{', '.join(known)}; got {item!r}"
            )
        scale[name] = int(count)
    return scale


def replica_problem(settings: ShopSettings, scale: Mapping[str, int]) -> str | None:
    """Why these replicas cannot run, or None: a service on SQLite runs one process."""
    for name, count in scale.items():
        if name == "web" or count == 1:
            continue
        url = settings.of(name).database_url
        if make_url(url).get_backend_name() == "sqlite":
            variable = CATALOG.get(name).settings.DATABASE_VARIABLE
            return (
                f"{name}={count}: the {name} service's database is SQLite, which lets one "
                "process write at a time, and its outbox relay takes no lease there "
                "(two relays would publish every event twice). Run one, or point "
                f"{variable} at PostgreSQL (postgresql+psycopg://...) to share the work."
            )
    return None


def process_specs(
    settings: ShopSettings, scale: Mapping[str, int] | None = None, access_log: bool = False
) -> list[ProcessSpec]:
    scale = scale or {}
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
            str(scale.get("web", WEB_WORKERS)),
            "--worker-class",
            "gthread",  # threads: a request waiting on a publisher confirm blocks no other
            "--threads",
            str(WEB_THREADS),
            *(access_log_options() if access_log else []),
            "--graceful-timeout",
            "10",
            "--no-control-socket",  # one fixed socket path per user: two shops would clash
            "shop.web:create_app()",
        ],
    )
    others = [
        ProcessSpec(
            name if replica == 1 else f"{name}-{replica}",
            [sys.executable, "-m", "shop", "run", name],
        )
        for name in CATALOG.names
        for replica in range(1, scale.get(name, 1) + 1)
    ]
    return [web, *others]


def access_log_options() -> list[str]:
    """A line per request on stdout (which `shop up` prefixes and prints: it costs each
    request a little, so it is asked for with `shop up --access-log`)."""
    return ["--access-logfile", "-", "--access-logformat", "%(m)s %(U)s%(q)s -> %(s)s in %(M)sms"]
