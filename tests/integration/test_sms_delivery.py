"""SMS delivery, claim-commit-send-record, on SQLite and PostgreSQL with the real broker
and a real HTTP gateway: the consumer only stores an SMS, the sender talks to the gateway
outside any transaction, so a slow or failing gateway holds up no other writer; a failed
attempt is retried on a backoff schedule; a permanent refusal ends FAILED; and however
often an event arrives or an SMS is re-sent, there is one SMS per event, one delivery per
key and one `notification.sms_sent`."""

import uuid

import pytest
from sqlalchemy import column, func, insert, select, table, update
from sqlalchemy.exc import OperationalError

from messaging.consumer import ConsumerRunner
from messaging.database import UtcDateTime, make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.migrations import upgrade
from messaging.outbox import utcnow
from notification_service.gateway import HttpGateway
from notification_service.handlers import ROUTES
from notification_service.models import (
    FAILED,
    PENDING,
    SENT,
    NotificationInbox,
    NotificationOutbox,
    Sms,
)
from notification_service.sender import SmsSender
from notification_service.service import SERVICE as NOTIFICATION
from shop.catalog import CATALOG
from tests.support.amqp import declare, publish_raw, wait_until
from tests.support.orders import ADMIN, a_product, an_order, client_for
from tests.support.pipeline import ServiceThread, events_of, pipeline_settings
from tests.support.sms_gateway import SmsGatewayServer

pytestmark = pytest.mark.integration

QUEUE = "notifications.sms"


@pytest.fixture
def engine(database_url):
    upgrade(NOTIFICATION, database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def broker_url(amqp_url):
    declare(amqp_url)
    return amqp_url


@pytest.fixture
def gateway():
    with SmsGatewayServer() as server:
        yield server


@pytest.fixture
def notification(engine, broker_url, gateway, start_in_thread):
    """The notification process's consumer and sender as threads, wired as its service.py does;
    call it with the sender's options (a short lease and retries for the tests)."""

    def start(sender_class=SmsSender, **sender_options) -> SmsSender:
        options = {"lease": 2.0, "retry_base": 0.2, "retry_cap": 1.0, **sender_options}
        sender = sender_class(
            engine=engine, gateway=HttpGateway(gateway.url, timeout=30), **options
        )
        start_in_thread(
            ConsumerRunner(
                queue=QUEUE,
                handler=ROUTES,
                after_commit=sender.wake,
                engine=engine,
                inbox_model=NotificationInbox,
                amqp_url=broker_url,
                topology=CATALOG.topology(),
            )
        )
        start_in_thread(sender)
        return sender

    return start


def order_confirmed(order_id: str | None = None) -> Envelope:
    order_id = order_id or str(uuid.uuid4())
    body = {
        "order_id": order_id,
        "customer": {"name": "Ada", "phone": "+4930123456"},
        "total_cents": 900,
    }
    return Envelope.new("order.confirmed", body, correlation_id=order_id, app_id="tests")


def deliver(amqp_url: str, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        publish_raw(amqp_url, QUEUE, envelope.encoded_body(), envelope.properties())


def sms_of(engine, key: str) -> Sms | None:
    """The SMS answering the event with this message id (its key)."""
    with make_session_factory(engine)() as session:
        return session.scalar(select(Sms).where(Sms.event_message_id == key))


def status_of(engine, envelope: Envelope) -> str | None:
    sms = sms_of(engine, envelope.message_id)
    return sms.status if sms else None


def failures_of(engine, envelope: Envelope) -> int:
    sms = sms_of(engine, envelope.message_id)
    return sms.attempts if sms else 0


def count(engine, model, *where) -> int:
    with make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def events(engine, event_type: str) -> list[dict]:
    with make_session_factory(engine)() as session:
        rows = session.scalars(
            select(NotificationOutbox).where(NotificationOutbox.event_type == event_type)
        )
        return [row.to_envelope().body for row in rows]


def pending_sms(key: str) -> Sms:
    return Sms(
        id=str(uuid.uuid4()),
        event_message_id=key,
        event="order.confirmed",
        phone="+4930123456",
        text="hi",
        status=PENDING,
        created_at=utcnow(),
        next_attempt_at=utcnow(),
        attempts=0,
    )


def test_a_slow_gateway_holds_up_no_other_writer_of_the_database(
    engine, broker_url, gateway, notification
):
    notification()
    gateway.hold()
    first, second = order_confirmed(), order_confirmed()
    deliver(broker_url, first)
    assert gateway.holding.wait(30), "the gateway never got the first SMS"

    # The gateway has the first SMS in hand and answers nothing: the database is free.
    with make_session_factory(engine).begin() as session:
        session.execute(
            insert(NotificationInbox).values(
                queue="tests",
                message_id=str(uuid.uuid4()),
                message_type="probe",
                handled_at=utcnow(),
            )
        )
    deliver(broker_url, second)
    wait_until(lambda: status_of(engine, second) == PENDING, what="the second event stored")
    assert status_of(engine, first) == PENDING

    gateway.release()
    wait_until(
        lambda: status_of(engine, first) == status_of(engine, second) == SENT, what="both SENT"
    )
    assert gateway.delivered == {first.message_id, second.message_id}
    assert len(events(engine, "notification.sms_sent")) == 2


def test_a_failing_gateway_is_retried_while_other_sms_go_out(
    engine, broker_url, gateway, notification
):
    notification()
    failing, other = order_confirmed(), order_confirmed()
    gateway.fail(failing.message_id, 503)
    deliver(broker_url, failing)
    wait_until(
        lambda: failures_of(engine, failing) >= 3,
        what="three failed attempts of the first SMS",
    )
    sms = sms_of(engine, failing.message_id)
    assert (sms.status, sms.last_error) == (
        PENDING,
        "SmsGatewayError: the gateway answered HTTP 503",
    )

    deliver(broker_url, other)  # the consumer and the sender go on meanwhile
    wait_until(lambda: status_of(engine, other) == SENT, what="the other SMS sent")
    assert status_of(engine, failing) == PENDING

    gateway.recover(failing.message_id)
    wait_until(lambda: status_of(engine, failing) == SENT, what="the first SMS sent at last")
    attempts = gateway.requests_for(failing.message_id)
    assert len(attempts) >= 4
    assert all(request.body["id"] == failing.message_id for request in attempts)
    assert gateway.delivered == {failing.message_id, other.message_id}
    sent = events(engine, "notification.sms_sent")
    assert sorted(e["order_id"] for e in sent) == sorted(
        [failing.body["order_id"], other.body["order_id"]]
    )


def test_a_failed_attempt_waits_out_a_growing_backoff_and_is_not_retried_before(engine, gateway):
    """The schedule itself, one pass at a time (no threads): each failure moves the next
    attempt out by a jittered delay whose ceiling doubles up to the cap, and nothing is
    sent before it is due."""
    key = "event-1"
    gateway.fail(key, 503)
    with make_session_factory(engine).begin() as session:
        session.add(pending_sms(key))
    gateway_client = HttpGateway(gateway.url, timeout=30)
    sender = SmsSender(engine=engine, gateway=gateway_client, retry_base=10.0, retry_cap=40.0)
    for failures, ceiling in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 40.0)]:
        before = utcnow()
        assert sender.send_due().claimed == 1
        after = utcnow()
        sms = sms_of(engine, key)
        assert (sms.status, sms.attempts) == (PENDING, failures)
        # next_attempt_at = (a moment between before and after) + delay, 5 <= delay <= ceiling
        assert (sms.next_attempt_at - before).total_seconds() >= 5.0
        assert (sms.next_attempt_at - after).total_seconds() <= ceiling
        assert sender.send_due().claimed == 0, "retried before it was due"
        with make_session_factory(engine).begin() as session:  # its time comes
            session.execute(update(Sms).values(next_attempt_at=utcnow()))
    assert len(gateway.requests_for(key)) == 4


def test_two_senders_share_the_work_and_never_send_one_sms_twice(engine, gateway, start_in_thread):
    keys = {f"event-{n}" for n in range(30)}
    with make_session_factory(engine).begin() as session:
        session.add_all(pending_sms(key) for key in keys)
    for name in ("sender 1", "sender 2"):  # as two notification processes would
        start_in_thread(
            SmsSender(engine=engine, gateway=HttpGateway(gateway.url), name=name, batch_size=4)
        )
    wait_until(lambda: count(engine, Sms, Sms.status == SENT) == 30, 30, "every SMS SENT")
    assert sorted(request.key for request in gateway.requests) == sorted(keys)  # once each
    assert len(events(engine, "notification.sms_sent")) == 30


def test_a_sender_asked_to_stop_hands_back_what_it_has_not_sent(engine, gateway, start_in_thread):
    keys = ["event-1", "event-2", "event-3"]
    with make_session_factory(engine).begin() as session:
        session.add_all(pending_sms(key) for key in keys)
    gateway.hold()
    sender = SmsSender(engine=engine, gateway=HttpGateway(gateway.url, timeout=30), lease=600)
    running = start_in_thread(sender)
    assert gateway.holding.wait(30), "the sender never sent the first SMS"
    running.stop.set()  # SIGTERM while the gateway has the first SMS in hand
    gateway.release()
    running.close()

    assert len(gateway.requests) == 1
    statuses = {key: sms_of(engine, key) for key in keys}
    sent = [key for key, sms in statuses.items() if sms.status == SENT]
    assert sent == [gateway.requests[0].key]
    handed_back = [sms for sms in statuses.values() if sms.status == PENDING]
    assert len(handed_back) == 2
    # Due now for the next sender, not when the ten-minute lease would have run out.
    assert all(sms.next_attempt_at <= utcnow() and sms.attempts == 0 for sms in handed_back)


class RecordFailsOnce(SmsSender):
    """A sender whose first record step fails after the gateway took the SMS: the crash
    between send and record."""

    crashed = False

    def _record(self, *results):
        if not self.crashed:
            self.crashed = True
            raise OperationalError("UPDATE sms_messages", {}, Exception("injected crash"))
        return super()._record(*results)


def test_one_sms_stored_and_delivered_per_event_despite_duplicates_and_a_crash(
    engine, broker_url, gateway, notification
):
    sender = notification(RecordFailsOnce, lease=1.0)
    outcomes = [order_confirmed() for _ in range(5)]
    deliver(broker_url, *outcomes, *outcomes)  # every event twice
    keys = {envelope.message_id for envelope in outcomes}

    wait_until(lambda: all(status_of(engine, e) == SENT for e in outcomes), 30, "every SMS SENT")
    assert sender.crashed
    assert count(engine, Sms) == 5
    assert gateway.delivered == keys
    assert {request.key for request in gateway.requests} == keys
    assert all(request.body["id"] == request.key for request in gateway.requests)
    resent = [key for key in keys if len(gateway.requests_for(key)) > 1]
    assert resent, "the SMS whose record failed were sent again, with the same key"
    sent = events(engine, "notification.sms_sent")
    assert sorted(e["order_id"] for e in sent) == sorted(e.body["order_id"] for e in outcomes)


def test_a_permanent_refusal_ends_failed_with_one_event(engine, broker_url, gateway, notification):
    notification()
    refused = order_confirmed()
    gateway.refuse(refused.message_id, 400)
    deliver(broker_url, refused, refused)
    wait_until(lambda: status_of(engine, refused) == FAILED, what="the SMS FAILED")

    sms = sms_of(engine, refused.message_id)
    assert (sms.attempts, sms.sent_at) == (1, None)
    assert "HTTP 400" in sms.last_error
    assert len(gateway.requests_for(refused.message_id)) == 1  # never retried
    failed = events(engine, "notification.sms_failed")
    assert len(failed) == 1
    assert failed[0]["order_id"] == refused.body["order_id"]
    assert "HTTP 400" in failed[0]["error"]
    assert events(engine, "notification.sms_sent") == []


def test_an_order_whose_sms_the_gateway_refuses_shows_it_in_its_timeline_and_the_backlog(
    tmp_path, database_url, amqp_url, gateway, start_in_thread
):
    declare(amqp_url)
    gateway.refuse_all(400)
    settings = pipeline_settings(tmp_path, database_url, amqp_url).with_changes(
        sms_gateway_url=gateway.url
    )
    for name in CATALOG.names:  # the shop, with service.py's own wiring of the notification process
        start_in_thread(ServiceThread(name, settings))
    client = client_for(settings)
    created = client.post("/api/products", json=a_product("TEA-1", stock=5), headers=ADMIN)
    assert created.status_code == 201
    order = client.post("/api/orders", json=an_order(("TEA-1", 1))).get_json()

    def both_refusals_told():
        story = client.get(f"/api/orders/{order['id']}").get_json()
        return story if events_of(story).count("notification.sms_failed") == 2 else None

    story = wait_until(both_refusals_told, 30, "the confirmation and reward SMS refused")
    assert "notification.sms_sent" not in events_of(story)
    details = [e["detail"] for e in story["timeline"] if e["event"] == "notification.sms_failed"]
    assert all("HTTP 400" in detail for detail in details)
    assert client.get("/api/pipeline").get_json()["sms"] == {"pending": 0, "failed": 2}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'shop_sms_backlog{status="failed"} 2' in metrics
    assert 'shop_sms_backlog{status="pending"} 0' in metrics


def test_the_migration_marks_the_sms_sent_before_it_as_sent(database_url):
    upgrade(NOTIFICATION, database_url, "0002")
    engine = make_engine(database_url)
    try:
        # The table as 0002 left it: an SMS row was written once it had been sent.
        old_table = table(
            "sms_messages",
            *(column(name) for name in ("id", "event_message_id", "event", "phone", "text")),
            column("sent_at", UtcDateTime()),
        )
        with engine.begin() as connection:
            connection.execute(
                insert(old_table).values(
                    id="old",
                    event_message_id="event-old",
                    event="order.confirmed",
                    phone="+4930123456",
                    text="hi",
                    sent_at=utcnow(),
                )
            )
        upgrade(NOTIFICATION, database_url)
        old = sms_of(engine, "event-old")
        assert (old.status, old.attempts) == (SENT, 0)
        assert old.created_at == old.next_attempt_at == old.sent_at
    finally:
        engine.dispose()
