"""The coupon service as the shop sees it: its line of the catalog (shop/catalog.py).

Two queues: `coupons.rpc`, where the order service asks (quote, reserve, create) and waits
for the answer, and `coupons.orders`, the orders' creation and outcomes (hold, redeem or
release a coupon; reward a confirmed order). Its process runs the RPC server, that
consumer and its outbox relay, as threads.
"""

from __future__ import annotations

from pathlib import Path

from coupon_service import events, handlers, rpc
from coupon_service.models import Base, CouponInbox, CouponOutbox
from coupon_service.settings import CouponSettings
from messaging.service import Service, ServiceContext, Worker
from messaging.topology import WorkQueue

RPC_QUEUE = "coupons.rpc"  # requests come through the default exchange
ORDERS_QUEUE = "coupons.orders"


def queues(_settings: CouponSettings) -> tuple[WorkQueue, ...]:
    return (
        WorkQueue(ORDERS_QUEUE, bindings=tuple(handlers.ROUTES.models)),
        WorkQueue(RPC_QUEUE),
    )


def workers(context: ServiceContext) -> list[Worker]:
    return [
        context.rpc_server(RPC_QUEUE, rpc.handlers(context.settings.reservation_ttl)),
        context.consumer(ORDERS_QUEUE, handlers.ROUTES, name="coupon consumer"),
        context.relay(name="coupon relay"),
    ]


SERVICE = Service(
    name="coupon",
    package="coupon_service",
    settings=CouponSettings,
    metadata=Base.metadata,
    outbox=CouponOutbox,
    inbox=CouponInbox,
    queues=queues,
    workers=workers,
    reads={ORDERS_QUEUE: handlers.ROUTES.models, RPC_QUEUE: rpc.REQUESTS},
    publishes=events.PUBLISHED,
    answers=(RPC_QUEUE,),
    migrations=Path(__file__).parent / "migrations",
)
