"""A web request takes an order while the broker is unreachable. Publishing inside the
request is a dual write: the order is committed to the database, the event is sent to
the broker, and nothing makes the two happen together. During the outage the publish
fails after the commit: the customer gets an error for an order that exists, and the
rest of the pipeline never hears of it (no stock reserved, no confirmation).

The transactional outbox writes the order and its event in one transaction, so the
event exists exactly when the order does, and the request never talks to the broker.
The relay publishes the outbox with publisher confirms and marks each row sent only
after its confirm; during the outage it reconnects with backoff, and once the broker is
back it publishes everything that waited, in order.

The outage here is a TCP proxy between the lab's clients and the broker, cut for a while:
that is what a lost broker looks like to a client (the connection drops, new ones are
refused), and the shared broker itself runs on untouched.
"""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shop.labs import parts
from shop.labs.lab import (
    Figures,
    Lab,
    Run,
    Variant,
    connect,
    cuttable,
    message_count,
    take_all,
    wait_for,
)

LAB = Lab(
    name="outbox",
    title="Transactional outbox: orders across a broker outage",
    question="The broker is unreachable for a while: what happens to the orders taken meanwhile?",
    sound=Variant(
        "outbox", "the request writes the order and its event in one transaction; a relay publishes"
    ),
    broken=Variant(
        "publish in the request", "the request commits the order, then publishes its event"
    ),
    guarantee="every order accepted reaches the pipeline, and no order is refused",
    holds=lambda figures: figures["orders_without_event"] == 0 and figures["refused"] == 0,
    outcome=(
        "{orders} orders, {during_outage} of them during the outage: {refused} answered with "
        "an error, {orders_without_event} stored but never heard of by the pipeline; "
        "{events} events delivered"
    ),
    read=(
        "messaging/outbox.py (the event row, added in the caller's transaction), "
        "messaging/relay.py (claim, publish with confirms, mark sent), and "
        "order_service/use_cases/orders.py, where an order and its `order.created` are one commit."
    ),
    by_hand="""\
1. `sudo rabbitmqctl stop_app` (or `docker compose stop rabbitmq`).
2. Place three orders (the same command three times):
   `post /api/orders '{"customer": {"name": "Ann", "phone": "+4930123456"},
   "items": [{"sku": "TEA-1", "quantity": 1}]}'`.
   Every one answers 201. The relay logs that it lost the broker and is reconnecting.
3. `sqlite3 var/orders.db 'select id, event_type, sent_at from order_outbox'`: the events wait.
4. `sudo rabbitmqctl start_app`. Within seconds the relay reconnects and publishes;
   `shop status` shows them in `inventory.orders`, in order.

Question: what would a service that published inside the request have answered in step 2?
""",
)

BEFORE, DURING, AFTER = 10, 10, 10  # orders before, during and after the outage
ORDER_PACE = 0.05  # seconds between two customers' orders
QUEUE = "lab.orders"  # bound to `order.created`: where the pipeline would hear of an order


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "lab_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item: Mapped[str] = mapped_column(String(50))


class OrderOutbox(parts.OutboxColumns, Base):
    __tablename__ = "lab_order_outbox"


class OutboxOrders:
    """The sound request: the order and its event, one transaction; no broker in sight."""

    def __init__(self, sessions) -> None:  # type: ignore[no-untyped-def]
        self.sessions = sessions
        self.outbox = parts.Outbox(OrderOutbox, app_id="lab")

    def place(self, item: str) -> bool:
        order_id = str(uuid.uuid4())
        with self.sessions.begin() as session:
            session.add(Order(id=order_id, item=item))
            self.outbox.add(
                session, "order.created", {"order_id": order_id}, correlation_id=order_id
            )
        return True  # 201


class PublishingOrders:
    """The broken request: commit the order, then publish on the process's connection."""

    def __init__(self, sessions, amqp_url: str) -> None:  # type: ignore[no-untyped-def]
        self.sessions = sessions
        self.amqp_url = amqp_url
        self.channel = None

    def place(self, item: str) -> bool:
        order_id = str(uuid.uuid4())
        with self.sessions.begin() as session:
            session.add(Order(id=order_id, item=item))
        try:
            if self.channel is None:
                self.channel = connect(self.amqp_url, "web app").channel()
            body = json.dumps({"order_id": order_id}).encode()
            self.channel.basic_publish(parts.EVENTS_EXCHANGE, "order.created", body)
        except parts.CONNECTION_ERRORS:
            self.channel = None  # reconnect on the next request
            return False  # 500: but the order is in the database
        return True


@LAB.measure
def measure(run: Run) -> Figures:
    engine, sessions = parts.database(run.workdir, Base.metadata)
    parts.declare_shop_topology(run.amqp_url)
    setup = connect(run.amqp_url, "lab: setup")
    channel = setup.channel()
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, parts.EVENTS_EXCHANGE, "order.created")
    setup.close()

    with cuttable(run.amqp_url) as (proxy, through_proxy):
        relay, restored = None, 0.0
        if run.broken:
            web = PublishingOrders(sessions, through_proxy)
        else:
            web = OutboxOrders(sessions)
            relay = parts.Running(parts.make_relay(engine, OrderOutbox, through_proxy))
        answers = []
        for phase, count in (("before", BEFORE), ("during", DURING), ("after", AFTER)):
            if phase == "during":
                proxy.cut()
            if phase == "after":
                proxy.restore()
                restored = time.monotonic()
            for n in range(count):
                answers.append((phase, web.place(f"{phase} {n}")))
                time.sleep(ORDER_PACE)  # the next customer
            if phase == "during":
                run.say(f"cut the broker off for {DURING} orders' time ({DURING * ORDER_PACE:g} s)")
        run.say(f"placed {BEFORE} orders before, {DURING} during and {AFTER} after the outage")

        orders = BEFORE + DURING + AFTER
        # What the web app believes it published, or (outbox) every order: wait for it. The
        # relay may be in a backoff of a few seconds; a published event is there at once.
        expected = sum(1 for _, accepted in answers if accepted) if run.broken else orders
        wait_for(
            lambda: (message_count(run.amqp_url, QUEUE) or 0) >= expected,
            5 if run.broken else 60,
            pause=0.1,
        )
        waited = time.monotonic() - restored
        if relay is not None:
            relay.close()
            run.say(
                f"the relay had published every event {waited:.1f} s after the broker came back"
            )
    events = {json.loads(body)["order_id"] for _, body in take_all(run.amqp_url, QUEUE)}
    with sessions() as session:
        stored = set(session.scalars(Order.__table__.select().with_only_columns(Order.id)))
    engine.dispose()
    return {
        "orders": orders,
        "during_outage": DURING,
        "refused": sum(1 for _, accepted in answers if not accepted),
        "stored": len(stored),
        "events": len(events),
        "orders_without_event": len(stored - events),
    }
