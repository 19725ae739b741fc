"""More consumers on one queue share its work (they compete for its messages), so the
work goes faster; but the queue's order is kept only as far as handing out goes. With one
consumer messages are handled in the order they were published; with three, a message can
be finished before the one published just ahead of it, which another consumer still has
in hand. A handler that assumes order then goes wrong: here each message sets a
product's stock, and a consumer that writes whatever it gets leaves some products with
an older number than their last update.

The sound handler does what the shop's read model does with `inventory.stock_changed`:
every update carries the stock item's version, and an update older than the one stored
is ignored, so the order of arrival no longer matters. The consumers are the shop's own
worker loop (prefetch 20, ack after the work); the lab keeps the stock in memory.
"""

from __future__ import annotations

import json
import random
import threading
import time

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, connect, wait_for

LAB = Lab(
    name="competing-consumers",
    title="Competing consumers: one vs three on one queue",
    question="Three consumers share a queue of stock updates: faster, but in what order?",
    sound=Variant("versioned", "an update older than the stored version is ignored"),
    broken=Variant("last write wins", "each update overwrites the stored stock"),
    guarantee="every product ends with its last update, however many consumers there are",
    holds=lambda figures: figures["stale_one"] == 0 and figures["stale_three"] == 0,
    outcome=(
        "{updates} updates: one consumer {rate_one}/s, out of order {out_of_order_one}, stale "
        "products {stale_one}; three consumers {rate_three}/s, out of order "
        "{out_of_order_three}, stale products {stale_three} of {products}"
    ),
    read=(
        "order_service/consumers/read_model.py (`on_stock_changed`: an older version is "
        "ignored) and messaging/consumer.py (QueueWorker, the loop every consumer runs)."
    ),
)

PRODUCTS, VERSIONS = 30, 5
WORK_SECONDS = (0.001, 0.006)  # each update takes a random time in this range
QUEUE = "lab.stock-updates"


class Stock:
    """The consumers' shared state: sku -> (version, available), and the order handled."""

    def __init__(self, versioned: bool) -> None:
        self.versioned = versioned
        self.rows: dict[str, tuple[int, int]] = {}
        self.handled: list[tuple[str, int, float]] = []  # sku, version, when
        self.lock = threading.Lock()

    def apply(self, body: bytes) -> None:
        update = json.loads(body)
        time.sleep(random.uniform(*WORK_SECONDS))  # the work
        sku, version = update["sku"], update["version"]
        with self.lock:
            self.handled.append((sku, version, time.monotonic()))
            stored_version, _ = self.rows.get(sku, (0, 0))
            if self.versioned and version <= stored_version:
                return  # an older change arriving late
            self.rows[sku] = (version, update["available"])


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "lab: setup")
    parts.declare_work_queue(connection.channel(), QUEUE)
    connection.close()
    figures: Figures = {"updates": PRODUCTS * VERSIONS, "products": PRODUCTS}
    for consumers, label in ((1, "one"), (3, "three")):
        stock, seconds = run_consumers(run.amqp_url, consumers, versioned=not run.broken)
        run.say(f"{label} consumer{'s' * (consumers > 1)} took {seconds:.2f} s for the updates")
        figures[f"rate_{label}"] = round(PRODUCTS * VERSIONS / seconds)
        figures[f"out_of_order_{label}"] = out_of_order(stock.handled)
        figures[f"stale_{label}"] = sum(
            1 for version, _ in stock.rows.values() if version != VERSIONS
        )
    return figures


def run_consumers(amqp_url: str, count: int, versioned: bool) -> tuple[Stock, float]:
    """Publish every update (each product's versions one after the other), let `count`
    consumers drain the queue: the stock they left, and the seconds from the first
    update handled to the last."""
    connection = connect(amqp_url, "inventory")
    channel = connection.channel()
    channel.confirm_delivery()  # every update is in the queue before the consumers start
    for n in range(PRODUCTS):
        for version in range(1, VERSIONS + 1):
            update = {"sku": f"SKU-{n}", "version": version, "available": 100 - version}
            channel.basic_publish("", QUEUE, json.dumps(update).encode())
    connection.close()
    stock = Stock(versioned)
    consumers = [
        parts.Running(parts.make_worker(QUEUE, amqp_url, stock.apply, f"consumer {n}"))
        for n in range(count)
    ]
    wait_for(lambda: len(stock.handled) >= PRODUCTS * VERSIONS, 60)
    for consumer in consumers:
        consumer.close()
    times = [at for _, _, at in stock.handled]
    return stock, max(times) - min(times)


def out_of_order(handled: list[tuple[str, int, float]]) -> int:
    """Updates handled after a later update of the same product."""
    latest: dict[str, int] = {}
    late = 0
    for sku, version, _ in handled:
        if version < latest.get(sku, 0):
            late += 1
        latest[sku] = max(version, latest.get(sku, 0))
    return late
