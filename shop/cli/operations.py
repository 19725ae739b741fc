"""`shop status`, `shop dlq list|replay QUEUE`, `shop docs`: looking at the running pipeline,
its dead letters, and the documents generated from the code."""

from __future__ import annotations

import argparse
import sys

from messaging import dead_letters
from messaging.connection import BrokerUnavailable, channel_for, close_quietly, open_connection
from messaging.pipeline import management_url
from shop.catalog import CATALOG, ShopSettings
from shop.cli.common import broker_help


def register(commands) -> None:  # type: ignore[no-untyped-def]
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
    docs = commands.add_parser(
        "docs", help="write the documents generated from the code (docs/asyncapi.yaml)"
    )
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 if one is stale")
    docs.set_defaults(command=cmd_docs)


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
