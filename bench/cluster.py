"""One RabbitMQ node against three: what the cluster costs in orders/s and buys in failover.

    python -m bench.cluster [--orders 400] [--down 4]

Each side is the real `shop up --scale order=2,inventory=2,coupon=2,notification=2` on
PostgreSQL (TEST_POSTGRES_URL's server, else a throwaway instance) and new RabbitMQ nodes
of this machine (shop/failover.py stages them, from the distribution's rabbitmq-server),
one side after the other, each torn down before the next:

- orders/s: ORDERS orders posted 8 at a time, from the first POST until the last one is
  confirmed (its `updated_at`);
- a node lost: orders stream in at 8/s while the node most clients are connected to
  stops for DOWN seconds (on one node: the broker) and comes back; the longest pause in
  decisions, and how long after the node was gone new orders went as fast as before.

Prints a Markdown table, the two sides side by side and their ratio. Where rabbitmq-server
(or PostgreSQL) is missing it prints one line, `skipped: ...`, and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from loadtest.crowd import Crowd
from shop import broker_nodes, failover
from shop.local_servers import Missing, wait_until

SCALE = "order=2,inventory=2,coupon=2,notification=2"
SKUS = ("BENCH-A", "BENCH-B", "BENCH-C")
PACE = 8.0  # orders a second while a node is lost
AT_ONCE = 8  # orders in flight during the throughput run


@dataclass(frozen=True)
class Side:
    nodes: int
    orders_per_second: float
    loss: failover.LossCost
    stop_seconds: float


def measure(nodes: int, orders: int, down: float) -> Side:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-cluster-{nodes}-") as workdir,
        failover.stage(Path(workdir), "--scale", SCALE, nodes=nodes) as stage,
    ):
        for sku in SKUS:
            product = {"sku": sku, "name": sku, "price_cents": 100, "stock": 1_000_000}
            requests.post(f"{stage.shop.base}/api/products", json=product, headers=stage.admin)
        settle(stage)
        rate = throughput(stage, orders)
        lost_at, gone, cost = lose_the_busiest_node(stage, down)
    return Side(nodes, rate, cost, gone - lost_at)


def settle(stage: failover.Stage) -> None:
    """Until every outbox is sent (the products are known everywhere)."""

    def sent() -> bool:
        outbox = requests.get(stage.shop.base + "/api/pipeline", timeout=10).json()["outbox"]
        return all(backlog == 0 for backlog in outbox.values())

    wait_until(sent, 120, "every outbox sent")


def throughput(stage: failover.Stage, orders: int) -> float:
    base = stage.shop.base
    started = time.time()
    with Crowd(base, AT_ONCE) as crowd:  # AT_ONCE keep-alive clients, one order each time
        posted = crowd.each(
            lambda client, n: failover.post_order(client, SKUS[n % len(SKUS)]),
            range(orders),
            deadline=time.monotonic() + 600,
        )
    ids = [p.id for p in posted if p.id is not None]

    def all_decided() -> list[dict] | None:
        found = [failover.order(base, order_id) for order_id in ids]
        return found if all(o["status"] != "PENDING" for o in found) else None

    decided = failover.decisions(wait_until(all_decided, 600, f"{len(ids)} orders decided"))
    return len(decided) / (decided[-1].decided_at - started)


def lose_the_busiest_node(
    stage: failover.Stage, down: float
) -> tuple[float, float, failover.LossCost]:
    stream = failover.OrderStream(stage.shop.base, SKUS, PACE).start()
    time.sleep(3)  # a baseline
    clients = failover.clients_per_node(stage.nodes[0])
    node = next(n for n in stage.nodes if n.name == max(clients, key=clients.get))
    lost_at = time.time()
    broker_nodes.stop_app(node)
    gone = time.time()
    time.sleep(down)
    broker_nodes.start_app(node)
    time.sleep(5)  # long enough after it is back for the backlog to drain
    stream.stop()

    def all_decided() -> list[dict] | None:
        found = [failover.order(stage.shop.base, p.id) for p in stream.accepted]
        return found if all(o["status"] != "PENDING" for o in found) else None

    decided = failover.decisions(wait_until(all_decided, 300, "the stream decided"))
    return lost_at, gone, failover.after_loss(decided, lost_at, gone, stream.posted[-1].at)


def table(one: Side, three: Side, orders: int, down: float) -> str:
    rows = [
        (
            f"orders/s ({orders} orders, {AT_ONCE} at a time, POST to confirmed)",
            one.orders_per_second,
            three.orders_per_second,
        ),
        (
            f"a node stopped for {down:g} s under {PACE:g} orders/s: the longest pause in "
            "decisions (s)",
            one.loss.pause,
            three.loss.pause,
        ),
        (
            "... new orders as fast as before, s after the node was gone",
            one.loss.caught_up,
            three.loss.caught_up,
        ),
        (
            "... the slowest order, POST to decision (s)",
            one.loss.worst_latency,
            three.loss.worst_latency,
        ),
        ("`rabbitmqctl stop_app` took (s)", one.stop_seconds, three.stop_seconds),
    ]
    lines = ["| | 1 node | 3 nodes | 3 / 1 |", "| --- | ---: | ---: | ---: |"]
    for label, a, b in rows:
        ratio = f"{b / a:.2f}" if a else "-"
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--down", type=float, default=4.0, help="seconds a node stays away")
    args = parser.parse_args(argv)
    try:
        broker_nodes.find_bin_directory()
        one = measure(1, args.orders, args.down)
        three = measure(3, args.orders, args.down)
    except Missing as missing:
        print(f"skipped: {missing}")
        return 0
    print(f"\n## One RabbitMQ node against three (shop up --scale {SCALE}, PostgreSQL)\n")
    print(table(one, three, args.orders, args.down))
    return 0


if __name__ == "__main__":
    sys.exit(main())
