"""The relay calls the broker with no database transaction open ("claim, commit, call,
record"), on SQLite and PostgreSQL against the real broker: while the broker stalls, other
writers go on and no row is locked; a relay that dies between publishing and recording
has its rows published again once its lease runs out."""

import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from messaging.connection import open_connection
from messaging.database import make_session_factory
from messaging.management import first_url
from messaging.publisher import ConfirmingPublisher
from order_service import events as order_events
from order_service.models import OrderOutbox
from shop.tcp_proxy import TcpProxy
from tests.support.amqp import take_all, wait_until
from tests.support.orders import add_events, migrated_outbox, relay_for

pytestmark = pytest.mark.integration

QUEUE = "inventory.orders"  # where order.created events land


@pytest.fixture
def engine(database_url, amqp_url):
    with migrated_outbox(database_url, amqp_url) as engine:
        yield engine


def backlog(engine) -> int:
    with make_session_factory(engine)() as session:
        return order_events.outbox.backlog(session)


def leased(engine) -> int:
    with make_session_factory(engine)() as session:
        query = select(func.count()).select_from(OrderOutbox)
        return session.scalar(query.where(OrderOutbox.claimed_until.is_not(None))) or 0


def assert_no_transaction_of_the_relay_is_open(engine, database_url: str) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            idle_in_transaction = connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
                )
            )
            assert idle_in_transaction == 0
            # Every unsent row can be locked at once: the relay holds no row lock.
            locked_now = connection.execute(
                select(OrderOutbox.id)
                .where(OrderOutbox.sent_at.is_(None))
                .with_for_update(nowait=True)
            ).all()
            assert len(locked_now) == 5
            connection.rollback()
    else:
        # Another writer takes the write lock at once (timeout 0: it would fail if held).
        other = sqlite3.connect(make_url(database_url).database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()


def test_while_the_broker_stalls_the_relay_holds_no_transaction_and_no_lock(
    engine, database_url, amqp_url, start_in_thread
):
    parts = urlsplit(first_url(amqp_url))  # the proxy stands for one node
    proxy = TcpProxy(parts.hostname, parts.port or 5672)
    through_proxy = urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
    try:
        add_events(engine, 1)
        start_in_thread(relay_for(engine, through_proxy))
        wait_until(lambda: backlog(engine) == 0, what="the relay to connect and publish")

        proxy.pause()
        add_events(engine, 5, first=1)
        # The relay has written the batch to the broker (a heartbeat is 8 bytes) and waits
        # for its confirms; on PostgreSQL the rows carry its lease.
        wait_until(lambda: proxy.held > 100, what="the relay to publish into the stalled broker")
        if engine.dialect.name == "postgresql":
            wait_until(lambda: leased(engine) == 5, what="the batch to be leased")
        assert backlog(engine) == 5
        assert_no_transaction_of_the_relay_is_open(engine, database_url)

        proxy.resume()
        wait_until(lambda: backlog(engine) == 0, what="the confirms to be recorded")
    finally:
        proxy.close()
    events = take_all(amqp_url, QUEUE, expected=6)
    assert sorted(e.body for e in events) == sorted(f'{{"n":{n}}}'.encode() for n in range(6))
    assert len({e.properties.message_id for e in events}) == 6, "a row was published twice"
    assert leased(engine) == 0


def test_rows_of_a_relay_that_died_before_recording_are_published_again(
    engine, amqp_url, start_in_thread
):
    add_events(engine, 5)
    dead = relay_for(engine, amqp_url, lease_seconds=2.0)
    rows = dead.claim()
    assert len(rows) == 5
    if engine.dialect.name == "postgresql":
        assert relay_for(engine, amqp_url).claim() == [], "a leased row was claimed again"
    connection = open_connection(amqp_url, "tests: the relay that dies")
    try:  # it publishes, the broker confirms, and it dies before it records anything
        publisher = ConfirmingPublisher(connection, connection.channel())
        outcomes = publisher.publish_batch(dead.outgoing(rows))
        assert all(outcome.confirmed for outcome in outcomes)
    finally:
        connection.close()
    assert backlog(engine) == 5

    start_in_thread(relay_for(engine, amqp_url))  # another relay, or the same one restarted
    wait_until(lambda: backlog(engine) == 0, what="the rows to be published after the lease")

    events = take_all(amqp_url, QUEUE, expected=10)
    published = [e.properties.message_id for e in events]
    assert len(published) == 10
    assert sorted(published) == sorted([row.message_id for row in rows] * 2)  # each twice
