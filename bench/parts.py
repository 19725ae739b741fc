"""Every piece of the shop's insides that the benches measure, imported here and nowhere else.

The benches time the shop's own code (its consumers, outbox relay, web app and admission
gate), so they need what a service keeps to itself: handlers, inbox and outbox models,
schemas, the topology, the processes' command lines. All of it comes in through this module,
so that a change in how the services are put together is fixed in this one file. The rest
of bench/ imports only this, messaging/'s generic mechanisms (connections, engines,
envelopes), shop/'s process and vhost helpers, loadtest/ and tests/support.

Read it as a list: what each bench takes from the shop, and the few helpers that build a
service's piece the way the service itself would (a relay, a timed consumer, order rows).
"""

from __future__ import annotations

import cProfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import Engine, Table, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from messaging.consumer import ConsumerRunner
from messaging.database import make_engine, make_session_factory
from messaging.migrations import upgrade
from messaging.outbox import utcnow
from messaging.queue_worker import QueueWorker
from messaging.relay import OutboxRelay
from messaging.routes import Handler
from messaging.service import ServiceContext
from messaging.topology import EVENTS_EXCHANGE
from order_service.commands import OrderIn, PurchaseIn
from order_service.consumers.flash_worker import PURCHASE_REQUESTED as PURCHASE_REQUEST
from order_service.events import SERVICE as ORDER_APP_ID
from order_service.events import outbox as order_outbox
from order_service.models import FlashSale, Order, OrderLine, OrderOutbox, Product, TimelineEntry
from order_service.service import FLASH_SALE_REQUESTS as FLASH_SALE_QUEUE
from order_service.settings import OrderSettings as Settings
from order_service.web.inputs import read_body
from order_service.web.problems import ApiProblem, problem
from shop.catalog import CATALOG
from shop.processes import process_specs

__all__ = [  # the names the benches use as they are
    "EVENTS_EXCHANGE",
    "FLASH_SALE_QUEUE",
    "ORDER_APP_ID",
    "ORDER_SERVICE",
    "PURCHASE_REQUEST",
    "ApiProblem",
    "OrderIn",
    "OutboxRelay",
    "PurchaseIn",
    "Settings",
    "problem",
    "read_body",
]

ORDER_SERVICE = "order"  # the order service's name in the catalog
TOPOLOGY = CATALOG.topology()  # the shop's exchanges and queues (shop/catalog.py)
FLASH_SALE_QUEUE_LIMIT = Settings().flash_sale_queue_limit
SHOP_WEB_APP = "shop.web:create_app()"  # the app at the end of the web command line
WORK_QUEUE_NAMES = [queue.name for queue in TOPOLOGY.queues]
OUTBOXES: dict[str, Table] = {  # service -> its outbox table, to see what is unsent
    service.name: service.outbox.__table__  # type: ignore[attr-defined]
    for service in CATALOG
}
DATABASE_VARIABLES = [service.settings.DATABASE_VARIABLE for service in CATALOG]
ORDERS = Order.__table__  # id, status, created_at, updated_at (set when CONFIRMED)
PREFETCH = QueueWorker.__init__.__kwdefaults__["prefetch"]  # a consumer's (its batch: half)


def declare_shop_topology(channel: BlockingChannel, limit: int = FLASH_SALE_QUEUE_LIMIT) -> None:
    settings = CATALOG.default_settings().with_changes(flash_sale_queue_limit=limit)
    CATALOG.topology(settings).declare(channel)


def migrate(service: str, database_url: str) -> None:
    upgrade(CATALOG.get(service), database_url)


@contextmanager
def migrated_engine(service: str, database_url: str) -> Iterator[Engine]:
    """The service's migrations run on `database_url`, and an engine for it (disposed after)."""
    migrate(service, database_url)
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def sqlite_file(service: str) -> Path:
    """Where `shop up` keeps a service's SQLite database by default, relative to its folder."""
    return Path(str(make_url(CATALOG.get(service).settings().database_url).database))


# --- The web process's command line ---------------------------------------------------------


def web_argv(port: int, app: str = SHOP_WEB_APP, host: str = "127.0.0.1") -> list[str]:
    """The shop's own gunicorn command line (shop.processes), with `app` at its end."""
    settings = CATALOG.default_settings().with_changes(http_host=host, http_port=port)
    web = next(spec for spec in process_specs(settings) if spec.name == "web")
    if web.argv[-1] != SHOP_WEB_APP:
        raise RuntimeError(f"the web process no longer ends with {SHOP_WEB_APP}: {web.argv}")
    return [*web.argv[:-1], app]


def web_option(name: str, default: str = "1") -> str:
    """One option of that command line: web_option("--workers") is "2"."""
    argv = web_argv(0)
    return argv[argv.index(name) + 1] if name in argv else default


# --- The order service's outbox and rows ------------------------------------------------------


def order_relay(engine: Engine, amqp_url: str, batch_size: int) -> OutboxRelay:
    """The order service's outbox relay, as its process makes it."""
    return OutboxRelay(
        engine=engine,
        model=OrderOutbox,
        amqp_url=amqp_url,
        topology=TOPOLOGY,
        batch_size=batch_size,
    )


def add_to_order_outbox(session: Session, event_type: str, body: dict[str, object]) -> None:
    order_outbox.add(session, event_type, body, correlation_id=str(body["order_id"]))


def order_outbox_backlog(engine: Engine) -> int:
    with make_session_factory(engine)() as session:
        return order_outbox.backlog(session)


@dataclass(frozen=True)
class ProductRow:
    sku: str
    name: str
    price_cents: int
    stock: int


def insert_orders(engine: Engine, product: ProductRow, customer: dict, count: int, status: str):
    """The product and `count` one-line orders, as the web app writes them; their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with make_session_factory(engine).begin() as session:
        session.add(
            Product(
                sku=product.sku,
                name=product.name,
                price_cents=product.price_cents,
                available=product.stock,
            )
        )
        for order_id in ids:
            now = utcnow()
            line = OrderLine(
                position=0,
                sku=product.sku,
                name=product.name,
                quantity=1,
                unit_price_cents=product.price_cents,
            )
            created = TimelineEntry(event="order.created", service=ORDER_APP_ID, at=now)
            session.add(
                Order(
                    id=order_id,
                    status=status,
                    customer_name=customer["name"],
                    customer_phone=customer["phone"],
                    subtotal_cents=product.price_cents,
                    discount_cents=0,
                    total_cents=product.price_cents,
                    coupon_code=None,
                    created_at=now,
                    updated_at=now,
                    lines=[line],
                    timeline=[created],
                )
            )
    return ids


def open_sale(engine: Engine, sale_id: str, quota: int) -> None:
    """A product and a flash sale of `quota` units, open now, its units held (as if the
    inventory had answered `flash_sale.created`)."""
    with make_session_factory(engine).begin() as session:
        session.add(Product(sku="BENCH-PHONE", name="Bench phone", price_cents=9900, available=0))
        session.flush()
        session.add(
            FlashSale(
                id=sale_id,
                sku="BENCH-PHONE",
                price_cents=100,
                requested_quota=quota,
                quota=quota,
                sold=0,
                allocation="held",
                starts_at=utcnow() - timedelta(minutes=1),
            )
        )


def service_consumer(service: str, queue: str, engine: Engine, amqp_url: str) -> ConsumerRunner:
    """The consumer of `queue` exactly as the service's process makes it (shop/catalog.py)."""
    entry = CATALOG.get(service)
    settings = CATALOG.default_settings().with_changes(amqp_url=amqp_url)
    context = ServiceContext(entry, settings.of(service), engine, TOPOLOGY)
    for worker in entry.workers(context):
        if isinstance(worker, ConsumerRunner) and worker.queue == queue:
            return worker
    raise LookupError(f"{service} has no consumer of {queue}")


def hold_sale_units(database: Path, sale_id: str) -> None:
    """Mark a flash sale's units held, as `inventory.allocated` would, so that it opens where
    no inventory runs beside the web app."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        with make_session_factory(engine).begin() as session:
            session.execute(
                update(FlashSale).where(FlashSale.id == sale_id).values(allocation="held")
            )
    finally:
        engine.dispose()


# --- The consumers, and a runner that times them ---------------------------------------------


@dataclass(frozen=True)
class Consumer:
    name: str
    queue: str
    service: str  # its name in the catalog
    inbox: type
    handler: Callable[[], Handler]  # what the runner calls for each message: the service's


def _service_handler(service: str, queue: str) -> Callable[[], Handler]:
    """The handler the service's own process gives the consumer of `queue`."""

    def handler() -> Handler:
        engine = make_engine("sqlite://")
        return service_consumer(service, queue, engine, CATALOG.default_settings().amqp_url).handler

    return handler


CONSUMERS = {
    consumer.name: consumer
    for consumer in [
        Consumer(name, queue, service, CATALOG.get(service).inbox, _service_handler(service, queue))
        for name, queue, service in (
            ("inventory consumer", "inventory.orders", "inventory"),
            ("order saga", "orders.inventory", "order"),
            ("order read model", "orders.read-model", "order"),
            ("coupon consumer", "coupons.orders", "coupon"),
            # it stores the SMS; the sender (woken after each commit) is not measured here
            ("notification consumer", "notifications.sms", "notification"),
        )
    ]
}

# Where a ConsumerRunner spends its time, for the profile: (file, function) of each step.
RUNNER_STEPS = {
    "consume": ("messaging/queue_worker.py", "work"),  # the whole loop, waiting included
    "delivery": ("messaging/consumer.py", "handle_batch"),
    "transaction": ("messaging/consumer.py", "_in_one_transaction"),
    "handler": ("messaging/routes.py", "__call__"),
    "inbox": ("messaging/inbox.py", "first_deliveries"),
    "envelope": ("messaging/envelope.py", "from_delivery"),
    "ack": ("messaging/delivery.py", "ack"),
}


class TimedRunner(ConsumerRunner):
    """A ConsumerRunner that notes its first delivery and stops once `expected` messages are
    settled (a requeued one comes back and counts when it is handled); it stops `profiler`
    right then, so that the runner's wait for `stop` is not profiled."""

    def __init__(
        self,
        *,
        expected: int,
        finished: threading.Event,
        profiler: cProfile.Profile | None = None,
        **options,  # type: ignore[no-untyped-def]
    ) -> None:
        super().__init__(**options)
        self.expected = expected
        self.finished = finished
        self.profiler = profiler
        self.first = self.last = 0.0

    def handle_batch(self, deliveries) -> None:  # type: ignore[no-untyped-def]
        if self.first == 0.0:
            self.first = time.perf_counter()
        super().handle_batch(deliveries)
        stats = self.stats
        if stats.handled + stats.duplicates + stats.dead_lettered == self.expected:
            self.last = time.perf_counter()
            if self.profiler is not None:
                self.profiler.disable()
            self.finished.set()


def timed_runner(
    consumer: Consumer,
    engine: Engine,
    amqp_url: str,
    expected: int,
    finished: threading.Event,
    prefetch: int,
    profiler: cProfile.Profile | None = None,
) -> TimedRunner:
    return TimedRunner(
        expected=expected,
        finished=finished,
        profiler=profiler,
        queue=consumer.queue,
        handler=consumer.handler(),
        engine=engine,
        inbox_model=consumer.inbox,
        amqp_url=amqp_url,
        topology=TOPOLOGY,
        name=f"bench {consumer.name}",
        prefetch=prefetch,
    )
