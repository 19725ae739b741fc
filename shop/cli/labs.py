"""`shop lab list|run|check|docs`: the teaching labs (shop/labs/): run one, break it on
purpose, check them all."""

from __future__ import annotations

import argparse
import functools
import sys

from shop.catalog import ShopSettings


def register(commands) -> None:  # type: ignore[no-untyped-def]
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


def cmd_lab_list(_args: argparse.Namespace, _settings: ShopSettings) -> int:
    from shop.labs import commands

    return commands.list_labs(sys.stdout)


def cmd_lab_run(args: argparse.Namespace, settings: ShopSettings) -> int:
    from shop.labs import commands

    broker = functools.partial(lab_broker, settings)  # found once the lab's name is known
    return commands.run_one(args.name, args.broken, args.json, broker, sys.stdout, sys.stderr)


def cmd_lab_check(args: argparse.Namespace, settings: ShopSettings) -> int:
    from shop.labs import commands

    return commands.check_all(lab_broker(settings), args.parallel, sys.stdout)


def cmd_lab_docs(_args: argparse.Namespace, _settings: ShopSettings) -> int:
    from shop.labs import commands

    return commands.print_docs(sys.stdout)


def lab_broker(settings: ShopSettings):  # type: ignore[no-untyped-def]
    from shop.vhosts import Broker

    return Broker.at(settings.amqp_url, settings.rabbitmq_management_url)
