"""The chaos run's faults, one at a time at random moments while the load runs.

- kill: SIGKILL of one process of the shop (a service process, the web app's gunicorn
  master or one of its workers); `shop up`'s supervisor (or gunicorn) starts it again.
- broker: `rabbitmqctl stop_app` on the run's own node, a few seconds down, `start_app`.
- postgres: a fast restart of the run's own PostgreSQL cluster (only on PostgreSQL).
- poison: a burst of messages no consumer can read, straight into work queues; each has a
  message id starting with `poison-`, recorded, so the dead-letter check knows them.
- duplicate: real events, copied off `shop.events` by a queue of our own bound to `#`,
  published again with the same message_id: the inboxes must turn them into no-ops.

The first round injects every kind once (in random order), so a short run sees them all.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import uuid
from collections import Counter, defaultdict

import pika

from messaging.connection import close_quietly, open_connection
from messaging.topology import EVENTS_EXCHANGE
from shop import broker_nodes, postgres_instances
from shop.chaos.stage import Stage
from shop.process_tree import children_by_parent

COPIES_QUEUE = "chaos.copies"
COPIES_LIMIT = 500
POISON_QUEUES = ("inventory.orders", "orders.inventory", "coupons.orders", "notifications.sms")
POISON_BURST = 3
DUPLICATES_PER_FAULT = 10
PAUSE = (2.0, 6.0)  # seconds between two faults
BROKER_DOWN = (1.0, 4.0)  # seconds the broker stays down


class Faults:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.kinds = ["kill", "broker", "poison", "duplicate"]
        if stage.postgres is not None:
            self.kinds.append("postgres")
        self.injected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # a fault that could not be injected
        self.poison: dict[str, set[str]] = defaultdict(set)  # queue: message ids
        self.stop = threading.Event()
        self.random = random.Random()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        self._copy_events()
        self._thread.start()

    def finish(self) -> None:
        """Stop injecting; returns once the fault in hand is over (the broker is back up)."""
        self.stop.set()
        self._thread.join()

    def _run(self) -> None:
        first_round = self.random.sample(self.kinds, len(self.kinds))
        while not self.stop.wait(self.random.uniform(*PAUSE)):
            kind = first_round.pop() if first_round else self.random.choice(self.kinds)
            try:
                getattr(self, f"_{kind}")()
            except Exception:  # a fault that misfires is counted, never fatal to the run
                self.failed[kind] += 1
            else:
                self.injected[kind] += 1

    # --- the kinds ------------------------------------------------------------------------

    def _kill(self) -> None:
        children = children_by_parent()
        services = children.get(self.stage.shop.process.pid, [])
        candidates = services + [w for pid in services for w in children.get(pid, [])]
        os.kill(self.random.choice(candidates), signal.SIGKILL)

    def _broker(self) -> None:
        try:
            broker_nodes.stop_app(self.stage.node)
            self.stop.wait(self.random.uniform(*BROKER_DOWN))  # down for a moment, not longer
        finally:
            # Also when stop_app failed: on a busy machine rabbitmqctl can give up waiting
            # for an application that did stop, and the run must not go on without a broker.
            broker_nodes.start_app(self.stage.node)

    def _postgres(self) -> None:
        assert self.stage.postgres is not None
        postgres_instances.restart(self.stage.postgres)

    def _poison(self) -> None:
        connection = open_connection(self.stage.node.amqp_url, "chaos: poison")
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for _ in range(POISON_BURST):
                queue = self.random.choice(POISON_QUEUES)
                message_id = f"poison-{uuid.uuid4()}"
                properties = pika.BasicProperties(
                    message_id=message_id, content_type="application/json", delivery_mode=2
                )
                channel.basic_publish("", queue, b"{not json", properties, mandatory=True)
                self.poison[queue].add(message_id)
        finally:
            close_quietly(connection)

    def _copy_events(self) -> None:
        """A bounded queue of our own that receives a copy of every event."""
        connection = open_connection(self.stage.node.amqp_url, "chaos: copies")
        try:
            channel = connection.channel()
            arguments = {"x-max-length": COPIES_LIMIT, "x-overflow": "drop-head"}
            channel.queue_declare(COPIES_QUEUE, durable=True, arguments=arguments)
            channel.queue_bind(COPIES_QUEUE, EVENTS_EXCHANGE, "#")
        finally:
            close_quietly(connection)

    def _duplicate(self) -> None:
        connection = open_connection(self.stage.node.amqp_url, "chaos: duplicates")
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            for _ in range(DUPLICATES_PER_FAULT):
                method, properties, body = channel.basic_get(COPIES_QUEUE, auto_ack=True)
                if method is None:
                    return
                channel.basic_publish(EVENTS_EXCHANGE, method.routing_key, body, properties)
        finally:
            close_quietly(connection)
