"""RabbitMQ delivers at least once: a consumer that dies after its work and before its
ack gets the message again, a relay that lost its connection before the confirm publishes
it again, an operator replays a dead letter. So every consumer sees some messages twice.
Here every message is delivered twice, on purpose, and each one credits loyalty points.

Without an inbox the handler credits twice. With one (the shop's ConsumerRunner) the
consumer records the message id in its own database in the same transaction as the
effect: the second delivery finds the id there, changes nothing, and is acked.
"""

from __future__ import annotations

import json
import uuid

import pika
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, wait_for

LAB = Lab(
    name="inbox",
    title="Inbox: every message delivered twice",
    question="Each message arrives twice: how many times is its effect applied?",
    sound=Variant("inbox", "the shop's ConsumerRunner: message id and effect in one transaction"),
    broken=Variant("no inbox", "a consumer that applies the effect and acks, remembering nothing"),
    guarantee="each message's effect is applied once, however often it arrives",
    holds=lambda figures: figures["double_effects"] == 0,
    outcome=(
        "{messages} messages, {deliveries} deliveries: {points} points credited where "
        "{points_due} were due ({double_effects} effects applied twice)"
    ),
    read=(
        "messaging/inbox.py (`first_deliveries`: one INSERT ... ON CONFLICT DO NOTHING) and "
        "messaging/consumer.py (inbox, handler and commit, then the ack)."
    ),
    by_hand="""\
The HTTP twin of the inbox: send the same order twice with `-H 'Idempotency-Key: abc'`:
the same order comes back. Change the quantity and keep the key: 409. Why is the key
stored in the same transaction as the order?
""",
)

MESSAGES = 20
POINTS = 10


class Base(DeclarativeBase):
    pass


class Credit(Base):
    __tablename__ = "lab_credits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer: Mapped[str] = mapped_column(String(50))
    points: Mapped[int] = mapped_column(Integer)


class LabInbox(parts.InboxColumns, Base):
    __tablename__ = "lab_inbox"


def credit(session: Session, body: dict) -> None:  # type: ignore[type-arg]
    """The effect: points for the customer (not idempotent by itself)."""
    session.add(Credit(customer=body["customer"], points=body["points"]))


@LAB.measure
def measure(run: Run) -> Figures:
    engine, sessions = parts.database(run.workdir, Base.metadata)
    parts.declare_shop_topology(run.amqp_url)
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(MESSAGES):
        message_id = str(uuid.uuid4())
        body = json.dumps({"customer": f"customer {n % 4}", "points": POINTS}).encode()
        properties = pika.BasicProperties(message_id=message_id, type="points.earned")
        for _ in range(2):  # the same message, twice: what a redelivery looks like
            channel.basic_publish("", parts.SHOP_QUEUE, body, properties)
    connection.close()
    run.say(f"published {MESSAGES} messages to `{parts.SHOP_QUEUE}`, each of them twice")

    if run.broken:
        consumer = Worker(run.amqp_url, parts.SHOP_QUEUE, name="consumer", work=naive(sessions))
        consumer.start()
        wait_for(lambda: consumer.count >= 2 * MESSAGES, 20)
        consumer.stop()
        run.say(f"a consumer without an inbox handled {consumer.count} deliveries")
    else:
        runner = parts.make_consumer(
            parts.SHOP_QUEUE,
            lambda session, envelope: credit(session, envelope.body),
            engine,
            LabInbox,
            run.amqp_url,
        )
        running = parts.Running(runner)
        stats = runner.stats
        wait_for(lambda: stats.handled + stats.duplicates >= 2 * MESSAGES, 20)
        running.close()
        run.say(
            f"the ConsumerRunner handled {stats.handled} and ignored {stats.duplicates} duplicates"
        )

    with sessions() as session:
        applied = session.scalar(select(func.count()).select_from(Credit)) or 0
        points = session.scalar(select(func.sum(Credit.points))) or 0
    engine.dispose()
    return {
        "messages": MESSAGES,
        "deliveries": 2 * MESSAGES,
        "points": points,
        "points_due": MESSAGES * POINTS,
        "double_effects": applied - MESSAGES,
    }


def naive(sessions):  # type: ignore[no-untyped-def]
    """The same effect in a consumer of its own: commit, then (the Worker) ack."""

    def handle(body: bytes) -> None:
        with sessions.begin() as session:
            credit(session, json.loads(body))

    return handle
