"""A tiny service for testing the consumer runner: its handler records an effect per message.

The body says what the handler does: {"n": 1} records effect 1; {"poison": true} raises
PoisonMessage; {"fail_times": k} fails k times before it succeeds (counted in the
database, so across redeliveries); {"always_fail": true} never succeeds.

Run as a process: python -m tests.support.sample_consumer DB_URL AMQP_URL HANDLER_SECONDS
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from messaging.consumer import ConsumerRunner
from messaging.database import make_engine
from messaging.envelope import Envelope, PoisonMessage
from messaging.inbox import InboxColumns
from messaging.logs import configure_logging
from shop.catalog import CATALOG

QUEUE = "inventory.orders"


class Base(DeclarativeBase):
    pass


class SampleInbox(InboxColumns, Base):
    __tablename__ = "sample_inbox"


class Effect(Base):
    __tablename__ = "sample_effects"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class Failure(Base):
    __tablename__ = "sample_failures"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


def make_handler(seconds: float = 0.0, failures=None):
    def handle(session: Session, envelope: Envelope) -> None:
        body = envelope.body
        if body.get("poison"):
            raise PoisonMessage("the sample handler refuses this body")
        if body.get("always_fail"):
            raise RuntimeError("the sample handler always fails on this one")
        if body.get("fail_times"):
            failed = failures.get(envelope.message_id, 0) if failures is not None else 0
            if failed < body["fail_times"]:
                if failures is not None:
                    failures[envelope.message_id] = failed + 1
                raise RuntimeError(f"transient failure {failed + 1}")
        time.sleep(seconds)  # "work": a SIGTERM lands in the middle of it
        session.add(Effect(message_id=envelope.message_id, n=int(body.get("n", 0))))

    return handle


def runner(database_url: str, amqp_url: str, seconds: float = 0.0, failures=None, **options):
    engine = make_engine(database_url)
    Base.metadata.create_all(engine)
    return ConsumerRunner(
        queue=QUEUE,
        handler=make_handler(seconds, failures),
        engine=engine,
        inbox_model=SampleInbox,
        amqp_url=amqp_url,
        topology=CATALOG.topology(),
        name="sample consumer",
        max_retry_delay=0.05,
        **options,
    )


def main() -> None:
    database_url, amqp_url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    configure_logging("sample_consumer")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = runner(database_url, amqp_url, seconds, prefetch=5)
    consumer.run(stop)
    print(
        f"STATS handled={consumer.stats.handled} duplicates={consumer.stats.duplicates}", flush=True
    )


if __name__ == "__main__":
    main()
