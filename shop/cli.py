"""The `shop` command: run the whole pipeline, one process, migrations, dead letters.

shop up                    every process, with prefixed logs (what `make run` calls)
shop run NAME              one process, e.g. `shop run inventory`
shop migrate [NAME...]     the services' migrations to head
shop alembic NAME ARGS...  Alembic's own command line for one service
shop topology              declare the exchanges and queues of CONTRACT.md
shop docs [--check]        write the documents generated from the code (docs/asyncapi.yaml)
shop status                queue depths, consumers and outbox backlogs
shop dlq list QUEUE        dead letters of QUEUE, with their reasons
shop dlq replay QUEUE      move them back to QUEUE for another try
shop loadtest flash-sale   a burst of distinct customers at a new flash sale, then a check
shop chaos                 the whole shop under load and faults, then its invariants
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from messaging import dead_letters, migrations
from messaging.connection import BrokerUnavailable, channel_for, close_quietly, open_connection
from messaging.logs import configure_logging
from messaging.pipeline import management_url
from messaging.settings import SettingsError, redact_url
from shop import processes
from shop.catalog import CATALOG, ShopSettings
from shop.supervisor import Supervisor

ADMIN_TOKEN_FILE = Path("var/admin-token")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = CATALOG.settings_from_env()
        return int(args.command(args, settings) or 0)
    except SettingsError as error:
        print(f"shop: configuration error: {error}", file=sys.stderr)
        return 2
    except BrokerUnavailable as error:
        print(broker_help(error), file=sys.stderr)
        return 1
    except dead_letters.UnknownQueue as error:
        print(f"shop: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shop", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run every process of the shop")
    up.set_defaults(command=cmd_up)

    run = commands.add_parser("run", help="run one process")
    run.add_argument("name", choices=CATALOG.names)
    run.set_defaults(command=cmd_run)

    migrate = commands.add_parser("migrate", help="run the services' migrations to head")
    migrate.add_argument(
        "names", nargs="*", metavar="NAME", help=f"of {', '.join(CATALOG.names)} (all by default)"
    )
    migrate.set_defaults(command=cmd_migrate)

    alembic = commands.add_parser(
        "alembic",
        help="Alembic's command line for one service",
        description="Runs `alembic ARGS...` against one service's migrations and database "
        "(its *_DATABASE_URL), e.g. `shop alembic order history` or "
        '`shop alembic order revision --autogenerate -m "..."`.',
    )
    alembic.add_argument("name", choices=CATALOG.names)
    alembic.add_argument("alembic_args", nargs=argparse.REMAINDER, metavar="ARGS")
    alembic.set_defaults(command=cmd_alembic)

    topology = commands.add_parser("topology", help="declare exchanges and queues")
    topology.set_defaults(command=cmd_topology)

    docs = commands.add_parser(
        "docs", help="write the documents generated from the code (docs/asyncapi.yaml)"
    )
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 if one is stale")
    docs.set_defaults(command=cmd_docs)

    status = commands.add_parser("status", help="queues, consumers and outbox backlogs")
    status.set_defaults(command=cmd_status)

    dlq = commands.add_parser("dlq", help="dead-letter queues").add_subparsers(
        required=True, metavar="ACTION"
    )
    dlq_list = dlq.add_parser("list", help="show the dead letters of a work queue")
    dlq_list.add_argument("queue")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_list.set_defaults(command=cmd_dlq_list)
    dlq_replay = dlq.add_parser("replay", help="move dead letters back to their work queue")
    dlq_replay.add_argument("queue")
    dlq_replay.set_defaults(command=cmd_dlq_replay)

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
    return parser


def broker_help(error: Exception) -> str:
    return (
        f"shop: {error}. Start one with `docker compose up -d rabbitmq`, or install your "
        "distribution's `rabbitmq-server` package and start it; or set AMQP_URL."
    )


def cmd_up(args: argparse.Namespace, settings: ShopSettings) -> int:
    close_quietly(open_connection(settings.amqp_url, "shop up: check", timeout=3))
    migrate_all(CATALOG.names, settings)
    order = settings.of("order")
    env = dict(os.environ)
    env["SHOP_ADMIN_TOKEN"] = admin_token(settings)
    env.setdefault("PYTHONUNBUFFERED", "1")
    metrics = tempfile.mkdtemp(prefix="shop-metrics-")  # the web workers' counts (ops/metrics.py)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics)
    print(f"shop: RabbitMQ at {redact_url(settings.amqp_url)}")
    print(f"shop: web app at http://{order.http_host}:{order.http_port}/")  # type: ignore[attr-defined]
    print(f"shop: admin token: {env['SHOP_ADMIN_TOKEN']}  (Authorization: Bearer <token>)")
    try:
        return Supervisor(processes.process_specs(settings), env).run()
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


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


def cmd_run(args: argparse.Namespace, settings: ShopSettings) -> int:
    configure_logging(CATALOG.get(args.name).package)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    processes.run(args.name, settings, stop)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: ShopSettings) -> int:
    unknown = [name for name in args.names if name not in CATALOG.names]
    if unknown:
        print(
            f"shop: no service is called {', '.join(unknown)}; the services are: "
            f"{', '.join(CATALOG.names)}",
            file=sys.stderr,
        )
        return 2
    migrate_all(args.names or CATALOG.names, settings)
    return 0


def migrate_all(names: list[str], settings: ShopSettings) -> None:
    for name in names:
        service, url = CATALOG.get(name), settings.of(name).database_url
        migrations.upgrade(service, url)
        print(f"shop: {service.package} database is up to date ({redact_url(url)})")


def cmd_alembic(args: argparse.Namespace, settings: ShopSettings) -> int:
    service = CATALOG.get(args.name)
    migrations.command_line(service, args.alembic_args, settings.of(args.name).database_url)
    return 0


def cmd_topology(_args: argparse.Namespace, settings: ShopSettings) -> int:
    topology = CATALOG.topology(settings)
    with channel_for(settings.amqp_url, "shop topology") as channel:
        topology.declare(channel)
    print(f"shop: declared {len(topology.queues)} work queues and their dead-letter queues")
    return 0


def cmd_docs(args: argparse.Namespace, _settings: ShopSettings) -> int:
    from shop.contracts import generated

    if args.check:
        stale = generated.stale()
        for path in stale:
            print(f"shop: {path} is stale: run `shop docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in generated.write() or ["nothing (every document was current)"]:
        print(f"shop: wrote {path}")
    return 0


def cmd_status(_args: argparse.Namespace, settings: ShopSettings) -> int:
    """The numbers of GET /api/pipeline (the same code: shop/ops/readings.py), as tables."""
    from shop.ops.readings import PipelineReader

    reader = PipelineReader(settings)
    failed = False
    try:
        with channel_for(settings.amqp_url, "shop status") as channel:
            reader.topology.declare(channel)
        queues = {queue.name: queue for queue in reader.queues()}
    except BrokerUnavailable as error:
        print(broker_help(error), file=sys.stderr)
        failed = True
    else:
        print(f"{'queue':<24} {'ready':>7} {'unacked':>7} {'consumers':>9} {'dead':>6}")
        for work_queue in reader.topology.queues:
            work, dead = queues[work_queue.name], queues[work_queue.dead_letter_queue]
            print(
                f"{work.name:<24} {_count(work.ready):>7} {_count(work.unacked):>7} "
                f"{_count(work.consumers):>9} {_count(dead.ready):>6}"
            )
        if any(queue.unacked is None for queue in queues.values()):
            management = management_url(settings.amqp_url, settings.rabbitmq_management_url)
            print(
                f"(-: unknown. unacked comes from the management API at {management}, "
                "which did not answer or has no statistics yet)"
            )

    try:
        backlogs = reader.outbox_backlogs()
    finally:
        reader.close()
    print(f"\n{'outbox':<24} {'backlog':>7}")
    for service, backlog in backlogs.items():
        note = "  (database unreachable or not migrated)" if backlog is None else ""
        print(f"{service:<24} {_count(backlog):>7}{note}")
    return 1 if failed else 0


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


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


def cmd_dlq_list(args: argparse.Namespace, settings: ShopSettings) -> int:
    topology = CATALOG.topology(settings)
    with channel_for(settings.amqp_url, "shop dlq list") as channel:
        topology.declare(channel)
        letters = dead_letters.list_dead_letters(channel, topology, args.queue, args.limit)
    if not letters:
        print(f"{dead_letters.dead_letter_queue(topology, args.queue)} is empty")
        return 0
    for letter in letters:
        print(
            f"{letter.message_id}  {letter.type or '-'}  reason={letter.reason}  "
            f"deaths={letter.deaths}\n    {letter.body_preview}"
        )
    print(f"{len(letters)} dead letters shown (limit {args.limit})")
    return 0


def cmd_dlq_replay(args: argparse.Namespace, settings: ShopSettings) -> int:
    topology = CATALOG.topology(settings)
    connection = open_connection(settings.amqp_url, "shop dlq replay")
    try:
        channel = connection.channel()
        topology.declare(channel)
        moved = dead_letters.replay_dead_letters(connection, channel, topology, args.queue)
    finally:
        close_quietly(connection)
    print(f"moved {moved} dead letters back to {args.queue}")
    return 0
