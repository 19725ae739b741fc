"""The coupon process: the RPC server, the `coupons.orders` consumer and the outbox relay."""

from __future__ import annotations

import threading

from coupon_service import handlers, rpc
from coupon_service.models import CouponInbox, CouponOutbox
from messaging.consumer import ConsumerRunner, route_by_type
from messaging.database import make_engine
from messaging.relay import OutboxRelay
from messaging.rpc import RpcServer
from messaging.service import run_together
from messaging.settings import Settings
from messaging.topology import COUPONS_RPC_QUEUE


def run(settings: Settings, stop: threading.Event) -> None:
    engine = make_engine(settings.coupon_database_url)
    common = {
        "amqp_url": settings.amqp_url,
        "flash_sale_queue_limit": settings.flash_sale_queue_limit,
    }
    run_together(
        [
            RpcServer(
                queue=COUPONS_RPC_QUEUE,
                handlers=rpc.handlers(settings.coupon_reservation_ttl),
                engine=engine,
                name="coupon rpc server",
                **common,
            ),
            ConsumerRunner(
                queue="coupons.orders",
                handler=route_by_type(handlers.HANDLERS),
                engine=engine,
                inbox_model=CouponInbox,
                inbox_retention_days=settings.inbox_retention_days,
                name="coupon consumer",
                **common,
            ),
            OutboxRelay(
                engine=engine,
                model=CouponOutbox,
                name="coupon relay",
                outbox_retention_days=settings.outbox_retention_days,
                **common,
            ),
        ],
        stop,
    )
