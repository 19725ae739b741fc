"""The outbox does not grow without bound, on SQLite and PostgreSQL against the real
broker: the relay prunes sent rows older than the retention in small batches between its
batches, keeps publishing while it does, and never prunes an unsent row."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from messaging.connection import open_connection
from messaging.database import make_session_factory
from messaging.outbox import utcnow
from messaging.publisher import ConfirmingPublisher
from order_service.models import OrderOutbox
from tests.support.amqp import take_all
from tests.support.orders import add_events, migrated_outbox, relay_for

pytestmark = pytest.mark.integration

LONG_AGO = timedelta(days=30)  # past the default retention (7 days)
LATELY = timedelta(days=1)


@pytest.fixture
def outbox_engine(database_url, amqp_url):
    with migrated_outbox(database_url, amqp_url) as engine:
        yield engine


def add_sent_events(engine, count: int, sent_ago: timedelta) -> None:
    """Write `count` events that were written and sent `sent_ago` (other unsent rows too)."""
    add_events(engine, count)
    with make_session_factory(engine).begin() as session:
        session.execute(
            update(OrderOutbox)
            .where(OrderOutbox.sent_at.is_(None))
            .values(sent_at=utcnow() - sent_ago, created_at=utcnow() - sent_ago)
        )


def count_outbox(engine, *conditions) -> int:
    with make_session_factory(engine)() as session:
        query = select(func.count()).select_from(OrderOutbox).where(*conditions)
        return session.scalar(query) or 0


def test_the_relay_prunes_old_sent_rows_in_batches_between_its_batches(outbox_engine, amqp_url):
    engine = outbox_engine
    add_sent_events(engine, 1200, LONG_AGO)
    add_sent_events(engine, 3, LATELY)
    add_events(engine, 250)  # waiting to be published
    old = OrderOutbox.sent_at < utcnow() - timedelta(days=7)
    relay = sample_relay(engine, amqp_url)

    connection = open_connection(amqp_url, "tests: relay")
    try:
        publisher = ConfirmingPublisher(connection, connection.channel())
        progress = []
        while (batch := relay.relay_once(publisher)).claimed:
            progress.append((batch.claimed, count_outbox(engine, old)))
        # Each batch of 100 is followed by one DELETE of at most 500 old rows.
        assert progress == [(100, 700), (100, 200), (50, 0)]
    finally:
        connection.close()

    assert count_outbox(engine, OrderOutbox.sent_at.is_(None)) == 0
    assert count_outbox(engine) == 3 + 250, "only old sent rows may go"
    assert len(take_all(amqp_url, "inventory.orders", expected=250)) == 250


def test_an_unsent_row_is_never_pruned_however_old(outbox_engine, amqp_url):
    engine = outbox_engine
    add_sent_events(engine, 2, LONG_AGO)
    add_events(engine, 4)
    with make_session_factory(engine).begin() as session:  # written long ago, never sent
        session.execute(
            update(OrderOutbox)
            .where(OrderOutbox.sent_at.is_(None))
            .values(created_at=utcnow() - LONG_AGO)
        )
    relay = sample_relay(engine, amqp_url)

    assert relay.pruner.prune_once() == 2
    assert relay.pruner.prune_once() == 0
    assert count_outbox(engine, OrderOutbox.sent_at.is_(None)) == 4


def sample_relay(engine, amqp_url):
    return relay_for(engine, amqp_url, batch_size=100, prune_batch_size=500, prune_interval=3600)
