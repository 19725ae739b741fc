"""`shop up`, `shop run NAME`, `shop migrate`, `shop alembic NAME`, `shop topology`: running
the shop, and what it needs before it runs."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading

from messaging import migrations
from messaging.connection import channel_for
from messaging.logs import configure_logging
from messaging.settings import redact_url
from messaging.topology import Topology
from shop import broker_users, demo, processes
from shop.catalog import CATALOG, ShopSettings
from shop.cli.common import admin_token
from shop.supervisor import Supervisor


def register(commands) -> None:  # type: ignore[no-untyped-def]
    up = commands.add_parser("up", help="run every process of the shop")
    up.add_argument(
        "--scale",
        default="",
        metavar="NAME=N[,NAME=N]",
        help="replicas: N processes of a service (PostgreSQL only), or N web workers",
    )
    up.add_argument(
        "--access-log", action="store_true", help="print a line per HTTP request (off: cheaper)"
    )
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

    topology = commands.add_parser(
        "topology",
        help="declare exchanges and queues (as AMQP_URL's user)",
        description="Declares the whole topology as the admin of AMQP_URL. With --users, "
        "also makes a broker user per service and one for monitoring, each allowed only "
        "what its catalog entry needs (shop/broker_users.py), with the passwords in "
        "SHOP_BROKER_PASSWORD_<NAME>; each process then connects with its <NAME>_AMQP_URL.",
    )
    topology.add_argument(
        "--users", action="store_true", help="also make the services' broker users"
    )
    topology.add_argument(
        "--user-prefix",
        default=broker_users.USER_PREFIX,
        metavar="PREFIX",
        help=f"the users' names: PREFIX + service (default {broker_users.USER_PREFIX!r})",
    )
    topology.set_defaults(command=cmd_topology)


def cmd_up(args: argparse.Namespace, settings: ShopSettings) -> int:
    try:
        scale = processes.parse_scale(args.scale)
    except processes.ScaleError as error:
        print(f"shop: {error}", file=sys.stderr)
        return 2
    problem = processes.replica_problem(settings, scale)
    if problem:
        print(f"shop: cannot scale {problem}", file=sys.stderr)
        return 2
    load_demo = demo.wanted(os.environ)
    # The whole topology, as AMQP_URL's user, before any process runs: each process
    # declares only its own part (which is all its broker user may do: shop/broker_users.py)
    declare_topology(settings, "shop up")
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
    specs = processes.process_specs(settings, scale, access_log=args.access_log)
    supervisor = Supervisor(specs, env)
    if load_demo:  # into an empty shop, once the web app answers (shop/demo.py)
        url = demo.web_app_url(order.http_host, order.http_port)  # type: ignore[attr-defined]
        demo.load_in_background(url, env["SHOP_ADMIN_TOKEN"], supervisor.print_line)
    else:
        print(f"shop: no demo catalog ({demo.VARIABLE}=0)")
    try:
        return supervisor.run()
    finally:
        shutil.rmtree(metrics, ignore_errors=True)


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


def cmd_topology(args: argparse.Namespace, settings: ShopSettings) -> int:
    users = broker_users.broker_users(settings, prefix=args.user_prefix) if args.users else []
    if users:
        try:
            broker_users.passwords(users, os.environ)  # every one, before anything is made
        except broker_users.UsersError as error:
            print(f"shop: {error}", file=sys.stderr)
            return 2
    topology = declare_topology(settings, "shop topology")
    print(f"shop: declared {len(topology.queues)} work queues and their dead-letter queues")
    if not users:
        return 0
    try:
        vhost = broker_users.create_users(
            users, settings.amqp_url, os.environ, settings.rabbitmq_management_url
        )
    except broker_users.UsersError as error:
        print(f"shop: {error}", file=sys.stderr)
        return 1
    urls = broker_users.url_variables(users, settings.amqp_url, os.environ)
    for user in users:
        rights = user.permissions
        print(
            f"shop: user {user.name} on vhost {vhost}"
            f"{' (tags: ' + ', '.join(user.tags) + ')' if user.tags else ''}: "
            f"configure {rights.configure}  write {rights.write}  read {rights.read}\n"
            f"      {user.url_variable}={redact_url(urls[user.url_variable])}"
            f"  (the password: {user.password_variable})"
        )
    return 0


def declare_topology(settings: ShopSettings, connection_name: str) -> Topology:
    """Every exchange, queue and binding of the shop, as AMQP_URL's user."""
    topology = CATALOG.topology(settings)
    with channel_for(settings.amqp_url, connection_name) as channel:
        topology.declare(channel)
    return topology
