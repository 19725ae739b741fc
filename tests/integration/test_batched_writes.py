"""A consumer reads what a batch needs once, before its first handler, and writes some rows
with the batch's one statement before the commit (messaging/batch_reads.py and
batch_writes.py): the inventory's decisions, the coupon service's rewards, the saga's
orders. Two copies of one event under different message ids (the inbox does not know they
are the same) in one batch must still have one effect: on the real broker, on SQLite and
PostgreSQL, the stock is taken once, the customer rewarded once, an order settled once."""

import uuid

import pytest
from sqlalchemy import func, select

from coupon_service.models import Coupon, CouponOutbox
from inventory_service.models import InventoryOutbox, Reservation, StockItem
from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.publisher import ConfirmingPublisher, Outgoing
from messaging.service import ServiceContext
from order_service.models import Order, OrderOutbox, Product, TimelineEntry
from order_service.use_cases.orders import new_order
from shop.catalog import CATALOG
from tests.support.amqp import wait_until

pytestmark = pytest.mark.integration

CUSTOMER = {"name": "Ann", "phone": "+4930123456"}
MONEY = {"subtotal_cents": 450, "discount_cents": 0, "total_cents": 450, "coupon_code": None}


def copies(event_type: str, body: dict, queue: str, app_id: str = "order_service") -> list:
    """The same event twice, each copy with a message id of its own."""
    return [
        Outgoing.to_queue(queue, Envelope.new(event_type, body, correlation_id="c", app_id=app_id))
        for _ in range(2)
    ]


def run_until_handled(
    service_name: str, queue: str, messages: list, database_url: str, amqp_url: str, start_in_thread
):
    """Publish `messages` to `queue` first (so the consumer takes them as one batch), then
    run the service's consumer of that queue until it has handled them all."""
    service = CATALOG.get(service_name)
    upgrade(service, database_url)
    engine = make_engine(database_url)
    topology = CATALOG.topology()
    connection = open_connection(amqp_url, "test: batched writes")
    topology.declare(connection.channel())
    ConfirmingPublisher(connection, connection.channel()).publish_batch(messages)
    connection.close()
    settings = CATALOG.default_settings().with_changes(amqp_url=amqp_url)
    settings = settings.with_service(service_name, database_url=database_url)
    context = ServiceContext(service, settings.of(service_name), engine, topology)
    consumer = next(w for w in service.workers(context) if getattr(w, "queue", None) == queue)
    start_in_thread(consumer)
    wait_until(
        lambda: consumer.stats.handled == len(messages), what=f"{len(messages)} messages handled"
    )
    return make_session_factory(engine)


def count(session, model, *conditions) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*conditions))


def test_an_order_created_twice_in_one_batch_takes_its_stock_once(
    database_url, amqp_url, start_in_thread
):
    queue, order_id = "inventory.orders", str(uuid.uuid4())
    product = {"sku": "TEA-1", "name": "Tea", "price_cents": 450, "stock": 10}
    first = Outgoing.to_queue(
        queue, Envelope.new("product.created", product, correlation_id="c", app_id="order_service")
    )
    line = {"sku": "TEA-1", "quantity": 3, "unit_price_cents": 450}
    order = {"order_id": order_id, "customer": CUSTOMER, "items": [line], **MONEY}
    messages = [first, *copies("order.created", order, queue)]
    sessions = run_until_handled(
        "inventory", queue, messages, database_url, amqp_url, start_in_thread
    )

    with sessions() as session:
        assert session.get(StockItem, "TEA-1").available == 7, "3 taken, once"
        assert count(session, Reservation, Reservation.order_id == order_id) == 1
        reserved = InventoryOutbox.event_type == "inventory.reserved"
        assert count(session, InventoryOutbox, reserved) == 1, "one answer for the order"


def test_an_order_confirmed_twice_in_one_batch_earns_one_reward(
    database_url, amqp_url, start_in_thread
):
    queue, order_id = "coupons.orders", str(uuid.uuid4())
    line = {"sku": "TEA-1", "quantity": 1}
    order = {"order_id": order_id, "customer": CUSTOMER, "items": [line], **MONEY}
    others = [str(uuid.uuid4()) for _ in range(3)]  # other orders in the same batch
    messages = [
        *[
            Outgoing.to_queue(
                queue,
                Envelope.new(
                    "order.confirmed",
                    {**order, "order_id": other},
                    correlation_id=other,
                    app_id="order_service",
                ),
            )
            for other in others
        ],
        *copies("order.confirmed", order, queue),
    ]
    sessions = run_until_handled("coupon", queue, messages, database_url, amqp_url, start_in_thread)

    with sessions() as session:
        for rewarded in [order_id, *others]:
            assert count(session, Coupon, Coupon.issued_for_order == rewarded) == 1
        issued = CouponOutbox.event_type == "coupon.issued"
        assert count(session, CouponOutbox, issued) == 4, "one coupon.issued per order"


def test_two_answers_for_one_order_in_one_batch_settle_it_once(
    database_url, amqp_url, start_in_thread
):
    queue = "orders.inventory"
    upgrade(CATALOG.get("order"), database_url)
    with make_session_factory(make_engine(database_url)).begin() as session:
        tea = Product(sku="TEA-1", name="Tea", price_cents=450, available=20)
        session.add(tea)
        session.flush()
        for order_id in ("first", "second"):
            session.add(new_order("Ann", "+4930123456", [(tea, 1, 450)], order_id=order_id))
    answers = [
        *copies("inventory.reserved", {"order_id": "first"}, queue, "inventory_service"),
        Outgoing.to_queue(
            queue,
            Envelope.new(
                "inventory.rejected",
                {"order_id": "first", "reason": "late"},
                correlation_id="first",
                app_id="inventory_service",
            ),
        ),
        *copies(
            "inventory.rejected",
            {"order_id": "second", "reason": "none left"},
            queue,
            "inventory_service",
        ),
    ]
    sessions = run_until_handled("order", queue, answers, database_url, amqp_url, start_in_thread)

    with sessions() as session:
        assert session.get(Order, "first").status == "CONFIRMED", "the first answer settles it"
        assert session.get(Order, "second").status == "REJECTED"
        for order_id, outcome in (("first", "order.confirmed"), ("second", "order.rejected")):
            told = count(session, OrderOutbox, OrderOutbox.correlation_id == order_id)
            assert told == 1, f"one outcome event for {order_id}"
            story = count(
                session,
                TimelineEntry,
                TimelineEntry.order_id == order_id,
                TimelineEntry.event == outcome,
            )
            assert story == 1, f"one {outcome} line in the story of {order_id}"
