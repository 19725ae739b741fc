"""The `shop` command: run the whole pipeline, one process, migrations, dead letters.

shop up                    every process, with prefixed logs (what `make run` calls)
shop run NAME              one process, e.g. `shop run inventory`
shop migrate               every service's migrations to head
shop topology              declare the exchanges and queues of CONTRACT.md
shop status                queue depths, consumers and outbox backlogs
shop dlq list QUEUE        dead letters of QUEUE, with their reasons
shop dlq replay QUEUE      move them back to QUEUE for another try
shop loadtest flash-sale   a burst of distinct customers at a new flash sale, then a check
shop chaos                 the whole shop under load and faults, then its invariants
shop lab list|run|check    the teaching labs: run one, break it, check them all
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from messaging import dead_letters, migrations
from messaging.connection import BrokerUnavailable, channel_for, close_quietly, open_connection
from messaging.logs import configure_logging
from messaging.settings import Settings, SettingsError, redact_url
from messaging.topology import WORK_QUEUES, declare_topology
from shop import processes
from shop.supervisor import Supervisor

ADMIN_TOKEN_FILE = Path("var/admin-token")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
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
    run.add_argument("name", choices=sorted(processes.RUNNABLES))
    run.set_defaults(command=cmd_run)

    migrate = commands.add_parser("migrate", help="run every service's migrations")
    migrate.set_defaults(command=cmd_migrate)

    topology = commands.add_parser("topology", help="declare exchanges and queues")
    topology.set_defaults(command=cmd_topology)

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

    lab = commands.add_parser("lab", help="teaching labs: run one, break it, check them all")
    lab_actions = lab.add_subparsers(required=True, metavar="ACTION")
    lab_actions.add_parser("list", help="one line per lab").set_defaults(command=cmd_lab_list)
    lab_run = lab_actions.add_parser(
        "run",
        help="run one lab in its own vhost",
        description="Exit 0 when the variant behaved as the lab teaches (the sound one holds "
        "its guarantee, the broken one shows its failure), 1 when not, 2 when it could not run.",
    )
    lab_run.add_argument("name", help="a lab's name, from `shop lab list`")
    lab_run.add_argument("--broken", action="store_true", help="run the unsafe variant")
    lab_run.add_argument("--json", action="store_true", help="the report as one JSON object")
    lab_run.set_defaults(command=cmd_lab_run)
    lab_check = lab_actions.add_parser("check", help="every lab, both variants, as a table")
    lab_check.add_argument("--parallel", type=int, default=4, metavar="N", help="runs at once")
    lab_check.set_defaults(command=cmd_lab_check)
    lab_docs = lab_actions.add_parser("docs", help="print docs/labs.md, made from the labs")
    lab_docs.set_defaults(command=cmd_lab_docs)
    return parser


def broker_help(error: Exception) -> str:
    return (
        f"shop: {error}. Start one with `docker compose up -d rabbitmq`, or install your "
        "distribution's `rabbitmq-server` package and start it; or set AMQP_URL."
    )


def cmd_up(_args: argparse.Namespace, settings: Settings) -> int:
    close_quietly(open_connection(settings.amqp_url, "shop up: check", timeout=3))
    cmd_migrate(_args, settings)
    env = dict(os.environ)
    env["SHOP_ADMIN_TOKEN"] = admin_token(settings)
    env.setdefault("PYTHONUNBUFFERED", "1")
    print(f"shop: RabbitMQ at {redact_url(settings.amqp_url)}")
    print(f"shop: web app at http://{settings.http_host}:{settings.http_port}/")
    print(f"shop: admin token: {env['SHOP_ADMIN_TOKEN']}  (Authorization: Bearer <token>)")
    return Supervisor(processes.process_specs(settings), env).run()


def admin_token(settings: Settings) -> str:
    """SHOP_ADMIN_TOKEN, or the one in var/admin-token, made on first use."""
    if settings.admin_token:
        return settings.admin_token
    if ADMIN_TOKEN_FILE.exists():
        return ADMIN_TOKEN_FILE.read_text().strip()
    ADMIN_TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    ADMIN_TOKEN_FILE.write_text(token + "\n")
    ADMIN_TOKEN_FILE.chmod(0o600)
    return token


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    service, runnable = processes.RUNNABLES[args.name]
    configure_logging(service)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runnable(settings, stop)
    return 0


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    for service, database_url in processes.SERVICE_DATABASES.items():
        url = database_url(settings)
        migrations.upgrade(service, url)
        print(f"shop: {service} database is up to date ({redact_url(url)})")
    return 0


def cmd_topology(_args: argparse.Namespace, settings: Settings) -> int:
    with channel_for(settings.amqp_url, "shop topology") as channel:
        declare_topology(channel, settings.flash_sale_queue_limit)
    print(f"shop: declared {len(WORK_QUEUES)} work queues and their dead-letter queues")
    return 0


def cmd_status(_args: argparse.Namespace, settings: Settings) -> int:
    """The numbers of GET /api/pipeline (the same code: messaging/pipeline.py), as tables."""
    from coupon_service.models import CouponOutbox
    from inventory_service.models import InventoryOutbox
    from messaging import pipeline
    from notification_service.models import NotificationOutbox
    from order_service.models import OrderOutbox

    failed = False
    try:
        with channel_for(settings.amqp_url, "shop status") as channel:
            declare_topology(channel, settings.flash_sale_queue_limit)
        queues = {
            queue.name: queue
            for queue in pipeline.read_queues(settings.amqp_url, settings.rabbitmq_management_url)
        }
    except BrokerUnavailable as error:
        print(broker_help(error), file=sys.stderr)
        failed = True
    else:
        print(f"{'queue':<24} {'ready':>7} {'unacked':>7} {'consumers':>9} {'dead':>6}")
        for work_queue in WORK_QUEUES:
            work, dead = queues[work_queue.name], queues[work_queue.dead_letter_queue]
            print(
                f"{work.name:<24} {_count(work.ready):>7} {_count(work.unacked):>7} "
                f"{_count(work.consumers):>9} {_count(dead.ready):>6}"
            )
        if any(queue.unacked is None for queue in queues.values()):
            management = pipeline.management_url(
                settings.amqp_url, settings.rabbitmq_management_url
            )
            print(
                f"(-: unknown. unacked comes from the management API at {management}, "
                "which did not answer or has no statistics yet)"
            )

    outbox_models = {
        "order_service": OrderOutbox,
        "inventory_service": InventoryOutbox,
        "coupon_service": CouponOutbox,
        "notification_service": NotificationOutbox,
    }
    engines = {}  # one per database URL: services may share a database
    outboxes = {}
    for service, database_url in processes.SERVICE_DATABASES.items():
        url = database_url(settings)
        if url not in engines:
            engines[url] = pipeline.read_only_engine(url)
        outboxes[service] = (engines[url], outbox_models[service].__tablename__)
    try:
        backlogs = pipeline.outbox_backlogs(outboxes)
    finally:
        for engine in engines.values():
            engine.dispose()
    print(f"\n{'outbox':<24} {'backlog':>7}")
    for service, backlog in backlogs.items():
        note = "  (database unreachable or not migrated)" if backlog is None else ""
        print(f"{service:<24} {_count(backlog):>7}{note}")
    return 1 if failed else 0


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def cmd_loadtest_flash_sale(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest import flash_sale

    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    options = flash_sale.Options(
        url=(args.url or f"http://{host}:{settings.http_port}").rstrip("/"),
        admin_token=admin_token(settings),
        customers=args.customers,
        concurrency=args.concurrency,
        quota=args.quota,
        decide_timeout=args.timeout,
        settle_timeout=args.timeout,
    )
    return flash_sale.main(options, sys.stdout, sys.stderr)


def cmd_chaos(args: argparse.Namespace, _settings: Settings) -> int:
    from shop.chaos import runner

    return runner.main(args.seconds, args.database, args.json, sys.stdout, sys.stderr)


def cmd_lab_list(_args: argparse.Namespace, _settings: Settings) -> int:
    from shop.labs import commands

    return commands.list_labs(sys.stdout)


def cmd_lab_run(args: argparse.Namespace, settings: Settings) -> int:
    from shop.labs import commands

    broker = functools.partial(lab_broker, settings)  # found once the lab's name is known
    return commands.run_one(args.name, args.broken, args.json, broker, sys.stdout, sys.stderr)


def cmd_lab_check(args: argparse.Namespace, settings: Settings) -> int:
    from shop.labs import commands

    return commands.check_all(lab_broker(settings), args.parallel, sys.stdout)


def cmd_lab_docs(_args: argparse.Namespace, _settings: Settings) -> int:
    from shop.labs import commands

    return commands.print_docs(sys.stdout)


def lab_broker(settings: Settings):  # type: ignore[no-untyped-def]
    from shop.vhosts import Broker

    return Broker.at(settings.amqp_url, settings.rabbitmq_management_url)


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    with channel_for(settings.amqp_url, "shop dlq list") as channel:
        declare_topology(channel, settings.flash_sale_queue_limit)
        letters = dead_letters.list_dead_letters(channel, args.queue, args.limit)
    if not letters:
        print(f"{dead_letters.dead_letter_queue(args.queue)} is empty")
        return 0
    for letter in letters:
        print(
            f"{letter.message_id}  {letter.type or '-'}  reason={letter.reason}  "
            f"deaths={letter.deaths}\n    {letter.body_preview}"
        )
    print(f"{len(letters)} dead letters shown (limit {args.limit})")
    return 0


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    connection = open_connection(settings.amqp_url, "shop dlq replay")
    try:
        channel = connection.channel()
        declare_topology(channel, settings.flash_sale_queue_limit)
        moved = dead_letters.replay_dead_letters(connection, channel, args.queue)
    finally:
        close_quietly(connection)
    print(f"moved {moved} dead letters back to {args.queue}")
    return 0
