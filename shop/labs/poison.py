"""A poison message is one that can never succeed as it is: a body that is not JSON, or
one in a schema the consumer does not know yet (a producer was deployed ahead of it). A
consumer that requeues every failure gets it back at once, forever: it spins on it, and
with a prefetch of one the good messages behind it wait for good.

The shop's ConsumerRunner rejects a poison message without requeue; its queue
dead-letters it into `<queue>.dead` (through `shop.dead-letter`), and the consumer goes on
with the next one. Nothing is lost: the dead letter waits with its reason until someone
looks (`shop dlq list`). Once the consumer is upgraded to read the new schema, `shop dlq
replay` moves the dead letters back; the one it can now read is handled, and the body that
is not JSON goes back to the dead-letter queue, for a human.
"""

from __future__ import annotations

import json
import uuid

import pika
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, message_count, wait_for

LAB = Lab(
    name="poison",
    title="Poison messages, the dead-letter queue, and replay",
    question="One message in the stream can never be handled: what happens to the others?",
    sound=Variant(
        "dead-letter", "the shop's ConsumerRunner rejects poison into `inventory.orders.dead`"
    ),
    broken=Variant("requeue", "a consumer that requeues every failure (prefetch 1)"),
    guarantee="every good message is handled, and every poison one waits in the dead-letter queue",
    holds=lambda figures: figures["good_handled"] == figures["good"] and figures["lost"] == 0,
    outcome=(
        "{good_handled} of {good} good messages handled; the 2 poison ones dead-lettered "
        "{dead_lettered} times and redelivered {redeliveries} times; {lost} lost"
    ),
    read=(
        "messaging/envelope.py (PoisonMessage), messaging/consumer.py (reject without "
        "requeue), messaging/dead_letters.py (`shop dlq list` and `shop dlq replay`)."
    ),
    by_hand="""\
1. Open the management UI (http://localhost:15672, guest/guest), queue `inventory.orders`,
   and publish a message with the payload `{not json` and a `message_id` property. The
   inventory log says "poison message dead-lettered" and goes on with the next order.
2. `shop dlq list inventory.orders` shows it with `reason=rejected`.
3. `shop dlq replay inventory.orders` moves it back for another try.
""",
)

GOOD = 20
QUEUE = parts.SHOP_QUEUE
NAIVE_QUEUE = "lab.tasks"  # a plain classic queue: no dead-letter exchange, no limit


class Base(DeclarativeBase):
    pass


class Handled(Base):
    __tablename__ = "lab_handled"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class LabInbox(parts.InboxColumns, Base):
    __tablename__ = "lab_inbox"


def handler(knows_version: int):  # type: ignore[no-untyped-def]
    def handle(session: Session, envelope: parts.Envelope) -> None:
        if envelope.schema_version > knows_version:
            raise parts.PoisonMessage(f"schema version {envelope.schema_version} is unknown here")
        session.add(Handled(message_id=envelope.message_id))

    return handle


def messages() -> list[tuple[bytes, pika.BasicProperties]]:
    """Ten good, a body that is not JSON, one in schema version 2, ten good."""

    def message(body: bytes, version: int = 1) -> tuple[bytes, pika.BasicProperties]:
        headers = {"schema_version": version}
        return body, pika.BasicProperties(message_id=str(uuid.uuid4()), headers=headers)

    good = [message(json.dumps({"n": n}).encode()) for n in range(GOOD)]
    return good[:10] + [message(b"{not json"), message(b'{"n": 99}', 2)] + good[10:]


@LAB.measure
def measure(run: Run) -> Figures:
    engine, sessions = parts.database(run.workdir, Base.metadata)
    parts.declare_shop_topology(run.amqp_url)
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.queue_declare(NAIVE_QUEUE)
    channel.confirm_delivery()  # a quorum queue has each one before the lab goes on
    for body, properties in messages():
        channel.basic_publish("", NAIVE_QUEUE if run.broken else QUEUE, body, properties)
    connection.close()
    run.say(f"published {GOOD} good messages, with two poison ones in the middle")
    figures = requeue_forever(run) if run.broken else dead_letter_and_replay(run, engine, sessions)
    engine.dispose()
    return figures


def dead_letter_and_replay(run: Run, engine, sessions) -> Figures:  # type: ignore[no-untyped-def]
    def handled() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(Handled)) or 0

    def dead() -> int:
        return message_count(run.amqp_url, f"{QUEUE}.dead") or 0

    consumer = parts.make_consumer(QUEUE, handler(1), engine, LabInbox, run.amqp_url)
    running = parts.Running(consumer)
    wait_for(lambda: handled() >= GOOD and dead() == 2, 20)
    running.close()
    good_handled, dead_lettered = handled(), dead()
    run.say(f"the consumer (schema 1) handled {good_handled}, dead-lettered {dead_lettered}")

    upgraded = parts.make_consumer(QUEUE, handler(2), engine, LabInbox, run.amqp_url)
    running = parts.Running(upgraded)
    moved = parts.replay(run.amqp_url, QUEUE)
    wait_for(lambda: handled() >= GOOD + 1 and dead() == 1, 20)
    running.close()
    run.say(
        f"upgraded the consumer to schema 2, replayed {moved} dead letters: "
        f"{handled() - good_handled} handled now, {dead()} back in the dead-letter queue"
    )
    return {
        "good": GOOD,
        "good_handled": good_handled,
        "dead_lettered": dead_lettered,
        "redeliveries": consumer.stats.requeued + upgraded.stats.requeued,
        "handled_after_replay": handled() - good_handled,
        "still_dead": dead(),
        "lost": GOOD + 2 - handled() - dead(),
    }


def requeue_forever(run: Run) -> Figures:
    requeueing = RequeueingConsumer()
    consumer = Worker(run.amqp_url, NAIVE_QUEUE, name="consumer", prefetch=1, handle=requeueing)
    consumer.start()
    wait_for(lambda: len(requeueing.done) >= GOOD, 3)  # the lab's patience: it would spin on
    consumer.stop()
    run.say(f"a consumer that requeues every failure took {consumer.count} deliveries in 3 s")
    left = message_count(run.amqp_url, NAIVE_QUEUE) or 0
    return {
        "good": GOOD,
        "good_handled": len(requeueing.done),
        "dead_lettered": 0,
        "redeliveries": requeueing.requeued,
        "handled_after_replay": 0,
        "still_dead": 0,
        "lost": GOOD + 2 - len(requeueing.done) - left,
    }


class RequeueingConsumer:
    """Parse, check the schema, record; on any failure: nack and requeue."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.requeued = 0

    def __call__(self, channel, method, properties, body: bytes) -> None:  # type: ignore[no-untyped-def]
        try:
            json.loads(body)
            if (properties.headers or {}).get("schema_version", 1) > 1:
                raise ValueError("schema version 2 is unknown here")
        except ValueError:
            self.requeued += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        self.done.add(properties.message_id)
        channel.basic_ack(method.delivery_tag)
