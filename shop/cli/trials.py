"""`shop loadtest flash-sale` and `shop chaos`: putting the shop under load, and under
faults, and checking what must hold."""

from __future__ import annotations

import argparse
import sys

from shop.catalog import ShopSettings
from shop.cli.common import admin_token


def register(commands) -> None:  # type: ignore[no-untyped-def]
    loadtest = commands.add_parser("loadtest", help="load tests through HTTP").add_subparsers(
        required=True, metavar="TEST"
    )
    flash = loadtest.add_parser(
        "flash-sale",
        help="a burst of distinct customers at a new flash sale; checks the invariants",
        description="Creates a product and a flash sale with the admin token (SHOP_ADMIN_TOKEN "
        "or var/admin-token), fires N distinct customers with C workers, waits for every "
        "ticket and won order, prints a report. Exit 1 when an invariant breaks, 2 when "
        "the shop is not reachable or refuses the token.",
    )
    flash.add_argument("--customers", type=int, default=1000, metavar="N")
    flash.add_argument("--concurrency", type=int, default=50, metavar="C")
    flash.add_argument("--quota", type=int, default=100, metavar="Q")
    flash.add_argument(
        "--url", help="the shop's web app (default: http://SHOP_HTTP_HOST:SHOP_HTTP_PORT)"
    )
    flash.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="the longest wait for the tickets to be decided, and again for the orders",
    )
    flash.set_defaults(command=cmd_loadtest_flash_sale)

    chaos = commands.add_parser(
        "chaos",
        help="the whole shop under load and random faults; then checks its invariants",
        description="Starts a throwaway RabbitMQ node (and PostgreSQL cluster) and `shop up`, "
        "runs a mixed load while killing processes, stopping the broker, restarting the "
        "database and injecting poison and duplicates; then checks the invariants. Exit 1 "
        "when one breaks, 2 when the run cannot start.",
    )
    chaos.add_argument("--seconds", type=float, default=60.0, metavar="N")
    chaos.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    chaos.add_argument("--json", action="store_true", help="the report as one JSON object")
    chaos.set_defaults(command=cmd_chaos)


def cmd_loadtest_flash_sale(args: argparse.Namespace, settings: ShopSettings) -> int:
    from loadtest import flash_sale

    order = settings.of("order")
    listening = order.http_host  # type: ignore[attr-defined]
    host = "127.0.0.1" if listening in ("0.0.0.0", "::", "") else listening
    options = flash_sale.Options(
        url=(args.url or f"http://{host}:{order.http_port}").rstrip("/"),  # type: ignore[attr-defined]
        admin_token=admin_token(settings),
        customers=args.customers,
        concurrency=args.concurrency,
        quota=args.quota,
        decide_timeout=args.timeout,
        settle_timeout=args.timeout,
    )
    return flash_sale.main(options, sys.stdout, sys.stderr)


def cmd_chaos(args: argparse.Namespace, _settings: ShopSettings) -> int:
    from shop.chaos import runner

    return runner.main(args.seconds, args.database, args.json, sys.stdout, sys.stderr)
