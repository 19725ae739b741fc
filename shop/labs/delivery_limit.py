"""Not every failure is poison: a database that times out, a bug that only bites on
Tuesdays. The shop's ConsumerRunner treats an unexpected exception as transient and
requeues the message after a short pause, so it is tried again. But a message that fails
every time would then go round for ever, burning a consumer. The quorum queue counts
each delivery (header `x-delivery-count`) and, past its delivery limit, dead-letters the
message into `<queue>.dead`, where it waits for a human and `shop dlq replay`.

The limit is a property of the queue, not of the consumer: the broken variant runs the
very same consumer on a quorum queue declared without `x-delivery-limit` (RabbitMQ 3.x
sets none by default), and the message comes back again and again.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pika
from sqlalchemy.orm import DeclarativeBase, Session

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, connect, message_count, wait_for

LAB = Lab(
    name="delivery-limit",
    title="The delivery limit: a message that always fails",
    question="A message makes its handler fail every time: how often is it tried?",
    sound=Variant(
        "delivery limit",
        f"the shop's work queue, with `x-delivery-limit: {parts.DELIVERY_LIMIT}`",
    ),
    broken=Variant("no limit", "the same consumer on a quorum queue without a delivery limit"),
    guarantee="a message that always fails ends in the dead-letter queue after the limit",
    holds=lambda figures: (
        figures["dead_lettered"] == 1 and figures["attempts"] <= figures["delivery_limit"] + 1
    ),
    outcome=(
        "the failing message was tried {attempts} times (limit {delivery_limit}); "
        "in the dead-letter queue: {dead_lettered}; {others_handled} of {others} others handled"
    ),
    read=(
        "messaging/topology.py (`x-delivery-limit` on every work queue) and "
        "messaging/consumer.py (a transient failure is requeued after a pause)."
    ),
)

OTHERS = 5
LIMITLESS_QUEUE = "lab.no-limit"
WATCH_ROUNDS = 3  # the lab stops watching once a message went round three times the limit


class Base(DeclarativeBase):
    pass


class LabInbox(parts.InboxColumns, Base):
    __tablename__ = "lab_inbox"


@LAB.measure
def measure(run: Run) -> Figures:
    engine, _sessions = parts.database(run.workdir, Base.metadata)
    queue = LIMITLESS_QUEUE if run.broken else parts.SHOP_QUEUE
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    parts.declare_work_queue(channel, LIMITLESS_QUEUE, delivery_limit=False)
    channel.confirm_delivery()  # a quorum queue has each one before the lab goes on
    failing = str(uuid.uuid4())
    channel.basic_publish("", queue, b'{"fail": true}', pika.BasicProperties(message_id=failing))
    for n in range(OTHERS):
        body = json.dumps({"n": n}).encode()
        channel.basic_publish("", queue, body, pika.BasicProperties(message_id=str(uuid.uuid4())))
    connection.close()
    run.say(f"published a message its handler always fails on, and {OTHERS} others, to `{queue}`")

    attempts: Counter[str] = Counter()

    def handle(_session: Session, envelope: parts.Envelope) -> None:
        attempts[envelope.message_id] += 1
        if envelope.body.get("fail"):
            raise RuntimeError("this one fails every time")

    consumer = parts.make_consumer(
        queue, handle, engine, LabInbox, run.amqp_url, max_retry_delay=0.02
    )
    running = parts.Running(consumer)
    dead = f"{queue}.dead"
    rounds = WATCH_ROUNDS * (parts.DELIVERY_LIMIT + 1)
    wait_for(lambda: message_count(run.amqp_url, dead) == 1 or attempts[failing] >= rounds, 30)
    running.close()
    engine.dispose()
    run.say(
        "the shop's ConsumerRunner consumed the queue until the failing message was "
        f"dead-lettered, or tried {rounds} times"
    )
    return {
        "delivery_limit": parts.DELIVERY_LIMIT,
        "attempts": attempts[failing],
        "dead_lettered": message_count(run.amqp_url, dead) or 0,
        "others": OTHERS,
        "others_handled": consumer.stats.handled,
    }
