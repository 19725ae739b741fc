"""A fifth service, made up for the tests: what docs/architecture.md's "Adding a service"
describes, in one module. It owns `payments.orders` (bound to `order.confirmed`), records a
payment per confirmed order and announces `payment.captured` through its outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from messaging.envelope import Envelope
from messaging.events import Event, with_example
from messaging.inbox import InboxColumns
from messaging.outbox import Outbox, OutboxColumns
from messaging.routes import Route, Routes
from messaging.service import Service, ServiceContext, Worker
from messaging.settings import ServiceSettings
from messaging.topology import WorkQueue


class Base(DeclarativeBase):
    pass


class Payment(Base):
    __tablename__ = "payments"
    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    amount_cents: Mapped[int] = mapped_column(Integer)


class PaymentOutbox(OutboxColumns, Base):
    __tablename__ = "payment_outbox"


class PaymentInbox(InboxColumns, Base):
    __tablename__ = "payment_inbox"


@dataclass(frozen=True)
class PaymentSettings(ServiceSettings):
    DATABASE_VARIABLE: ClassVar[str] = "PAYMENT_DATABASE_URL"
    database_url: str = "sqlite:///var/payments.db"


class PaymentCaptured(Event):
    TYPE = "payment.captured"
    SUMMARY = "A confirmed order is paid."
    model_config = with_example(order_id="o-1", amount_cents=800)
    order_id: str
    amount_cents: int


class OrderConfirmed(BaseModel):  # what payments needs of order.confirmed
    order_id: str
    total_cents: int


outbox = Outbox(PaymentOutbox, app_id="payment_service")


def on_order_confirmed(session: Session, envelope: Envelope) -> None:
    order = envelope.body_as(OrderConfirmed)
    session.add(Payment(order_id=order.order_id, amount_cents=order.total_cents))
    outbox.add_event(
        session,
        PaymentCaptured(order_id=order.order_id, amount_cents=order.total_cents),
        correlation_id=order.order_id,
    )


ROUTES = Routes(Route("order.confirmed", OrderConfirmed, on_order_confirmed))
QUEUE = "payments.orders"


def workers(context: ServiceContext) -> list[Worker]:
    return [context.consumer(QUEUE, ROUTES), context.relay()]


SERVICE = Service(
    name="payment",
    package="payment_service",
    settings=PaymentSettings,
    metadata=Base.metadata,
    outbox=PaymentOutbox,
    inbox=PaymentInbox,
    queues=lambda _settings: (WorkQueue(QUEUE, bindings=tuple(ROUTES.models)),),
    workers=workers,
    reads={QUEUE: ROUTES.models},
    publishes=(PaymentCaptured,),
)
