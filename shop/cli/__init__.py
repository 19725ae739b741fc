"""The `shop` command: run the whole pipeline, one process, migrations, dead letters.

shop up                    every process, with prefixed logs (what `make run` calls)
shop run NAME              one process, e.g. `shop run inventory`
shop migrate [NAME...]     the services' migrations to head
shop alembic NAME ARGS...  Alembic's own command line for one service
shop topology [--users]    declare the exchanges and queues of CONTRACT.md (and a broker
                           user per service, each allowed only its own part)
shop status                queue depths, consumers and outbox backlogs
shop dlq list QUEUE        dead letters of QUEUE, with their reasons
shop dlq replay QUEUE      move them back to QUEUE for another try
shop docs [--check]        write the documents generated from the code (docs/asyncapi.yaml)
shop loadtest flash-sale   a burst of distinct customers at a new flash sale, then a check
shop chaos                 the whole shop under load and faults, then its invariants
shop cluster up|status|down|grow   a RabbitMQ cluster on this machine (prints AMQP_URL=...)
shop lab list|run|check    the teaching labs: run one, break it, check them all

Each group of commands is a module here with a `register(commands)` that adds its
subcommands: running.py (up, run, migrate, alembic, topology), operations.py (status, dlq,
docs), trials.py (loadtest, chaos), brokers.py (cluster), labs.py (lab).
"""

from __future__ import annotations

import argparse
import sys

from messaging import dead_letters
from messaging.connection import BrokerUnavailable
from messaging.settings import SettingsError
from shop.catalog import CATALOG
from shop.cli import brokers, labs, operations, running, trials
from shop.cli.common import broker_help

GROUPS = (running, operations, trials, brokers, labs)


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
    for group in GROUPS:
        group.register(commands)
    return parser
