"""`shop cluster up|status|down|grow`: a RabbitMQ cluster on this machine, for development
and the tests (shop/cluster.py)."""

from __future__ import annotations

import argparse

from shop.catalog import ShopSettings


def register(commands) -> None:  # type: ignore[no-untyped-def]
    cluster = commands.add_parser(
        "cluster", help="a RabbitMQ cluster on this machine, for development and tests"
    ).add_subparsers(required=True, metavar="ACTION")
    cluster_up = cluster.add_parser(
        "up",
        help="start and join new nodes; prints AMQP_URL=... (progress on stderr)",
        description="Node i gets AMQP on BASE+i, the management API on BASE+10000+i and "
        "Erlang distribution on BASE+20000+i; var/cluster.json records them.",
    )
    cluster_up.add_argument("--nodes", type=int, default=3, metavar="N")
    cluster_up.add_argument("--base-port", type=int, default=5701, metavar="BASE")
    cluster_up.set_defaults(command=cmd_cluster, action="up")
    for action, text in (
        ("status", "one line per node: name, AMQP port, running or stopped"),
        ("down", "stop every node and delete its files"),
        (
            "grow",
            "give every quorum queue a member on each running node (after a node was replaced)",
        ),
    ):
        cluster.add_parser(action, help=text).set_defaults(command=cmd_cluster, action=action)


def cmd_cluster(args: argparse.Namespace, _settings: ShopSettings) -> int:
    from shop import cluster

    options = {"nodes": args.nodes, "base_port": args.base_port} if args.action == "up" else {}
    return cluster.main(args.action, **options)
