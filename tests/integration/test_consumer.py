"""The consumer runner against the real broker, on SQLite and PostgreSQL: acks after
commit, one effect per message however often it is delivered, poison to `<queue>.dead`
while the consumer goes on, retries until the delivery limit, SIGTERM loses nothing; old
inbox rows of its own queue are pruned, and a message still remembered is a duplicate."""

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pika
import pytest
from sqlalchemy import func, select

from messaging.connection import open_connection
from messaging.database import make_engine, make_session_factory
from messaging.envelope import Envelope
from messaging.outbox import utcnow
from messaging.topology import DELIVERY_LIMIT
from tests.support import sample_consumer
from tests.support.amqp import declare, publish_raw, queue_depth, wait_until

pytestmark = pytest.mark.integration

QUEUE = sample_consumer.QUEUE
DEAD = f"{QUEUE}.dead"
REPO = Path(__file__).resolve().parents[2]


def send(amqp_url: str, body: dict, message_id: str | None = None) -> str:
    envelope = Envelope.new("order.created", body, correlation_id="c", app_id="tests")
    if message_id:
        envelope = Envelope(**{**envelope.__dict__, "message_id": message_id})
    publish_raw(amqp_url, QUEUE, envelope.encoded_body(), envelope.properties())
    return envelope.message_id


def effects(database_url: str) -> list[int]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return sorted(session.scalars(select(sample_consumer.Effect.n)))
    finally:
        engine.dispose()


@pytest.fixture
def queue(amqp_url):
    declare(amqp_url)
    return amqp_url


def test_poison_goes_to_the_dead_letter_queue_while_the_consumer_goes_on(
    database_url, queue, start_in_thread
):
    amqp_url = queue
    send(amqp_url, {"n": 1})
    publish_raw(amqp_url, QUEUE, b"{not json", pika.BasicProperties(message_id="bad-json"))
    publish_raw(amqp_url, QUEUE, b'{"n": 9}', pika.BasicProperties())  # no message_id
    send(amqp_url, {"poison": True})
    send(amqp_url, {"n": 2})
    consumer = sample_consumer.runner(database_url, amqp_url)
    start_in_thread(consumer)

    wait_until(lambda: effects(database_url) == [1, 2], what="both good messages handled")
    wait_until(lambda: queue_depth(amqp_url, DEAD) == 3, what="three dead letters")
    assert consumer.stats.dead_lettered == 3
    assert queue_depth(amqp_url, QUEUE) == 0


def test_a_message_delivered_twice_has_one_effect(database_url, queue, start_in_thread):
    amqp_url = queue
    message_id = str(uuid.uuid4())
    send(amqp_url, {"n": 1}, message_id)
    send(amqp_url, {"n": 1}, message_id)
    send(amqp_url, {"n": 2})
    consumer = sample_consumer.runner(database_url, amqp_url)
    start_in_thread(consumer)

    wait_until(lambda: consumer.stats.handled + consumer.stats.duplicates == 3, what="3 deliveries")
    assert effects(database_url) == [1, 2]
    assert consumer.stats.duplicates == 1
    assert queue_depth(amqp_url, QUEUE) == 0


def test_a_transient_failure_is_retried_until_it_succeeds(database_url, queue, start_in_thread):
    amqp_url = queue
    send(amqp_url, {"n": 7, "fail_times": 2})
    failures: dict[str, int] = {}
    consumer = sample_consumer.runner(database_url, amqp_url, failures=failures)
    start_in_thread(consumer)

    wait_until(lambda: effects(database_url) == [7], what="the retried message to succeed")
    assert list(failures.values()) == [2]
    assert consumer.stats.requeued == 2
    assert queue_depth(amqp_url, DEAD) == 0


def test_a_message_that_always_fails_is_dead_lettered_at_the_delivery_limit(
    database_url, queue, start_in_thread
):
    amqp_url = queue
    send(amqp_url, {"always_fail": True})
    send(amqp_url, {"n": 3})
    consumer = sample_consumer.runner(database_url, amqp_url)
    start_in_thread(consumer)

    wait_until(lambda: queue_depth(amqp_url, DEAD) == 1, timeout=60, what="the delivery limit")
    assert effects(database_url) == [3]
    assert consumer.stats.requeued == DELIVERY_LIMIT + 1


def shop_command(amqp_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shop", *args],
        env={**os.environ, "AMQP_URL": amqp_url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dead_letters_are_listed_with_their_reason_and_replayed(queue):
    amqp_url = queue
    poisoned = send(amqp_url, {"poison": True})
    connection = open_connection(amqp_url, "tests: reject")
    channel = connection.channel()
    method, _props, _body = channel.basic_get(QUEUE)
    channel.basic_reject(method.delivery_tag, requeue=False)  # what the runner does to poison
    connection.close()
    wait_until(lambda: queue_depth(amqp_url, DEAD) == 1, what="the dead letter")

    listed = shop_command(amqp_url, "dlq", "list", QUEUE)
    assert listed.returncode == 0, listed.stderr
    assert poisoned in listed.stdout and "reason=rejected" in listed.stdout
    assert queue_depth(amqp_url, DEAD) == 1, "listing must not remove anything"

    replayed = shop_command(amqp_url, "dlq", "replay", QUEUE)
    assert replayed.returncode == 0, replayed.stderr
    assert "moved 1 dead letters back to inventory.orders" in replayed.stdout
    assert queue_depth(amqp_url, DEAD) == 0
    assert queue_depth(amqp_url, QUEUE) == 1

    unknown = shop_command(amqp_url, "dlq", "list", "no.such.queue")
    assert unknown.returncode == 2
    assert "not a work queue" in unknown.stderr and "Traceback" not in unknown.stderr


def test_sigterm_mid_message_finishes_it_and_loses_nothing(database_url, queue):
    amqp_url = queue
    total = 30
    for n in range(total):
        send(amqp_url, {"n": n})
    engine = make_engine(database_url)
    sample_consumer.Base.metadata.create_all(engine)
    engine.dispose()
    command = [sys.executable, "-m", "tests.support.sample_consumer", database_url, amqp_url]

    first = subprocess.Popen([*command, "0.2"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    wait_until(lambda: len(effects(database_url)) >= 3, what="the consumer to get going")
    first.send_signal(signal.SIGTERM)  # the handler sleeps 0.2 s: it is mid-message
    output, _ = first.communicate(timeout=30)
    assert first.returncode == 0, output
    handled = int(output.split("STATS handled=")[1].split()[0])
    done = effects(database_url)
    assert len(done) == handled, "the message in hand was not finished, or was finished twice"
    wait_until(
        lambda: queue_depth(amqp_url, QUEUE) == total - handled,
        what="every unfinished message back in the queue",
    )

    second = subprocess.Popen([*command, "0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(effects(database_url)) == total, what="the rest to be handled")
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    assert effects(database_url) == list(range(total))
    assert queue_depth(amqp_url, DEAD) == 0


def test_handled_messages_are_recorded_in_the_inbox(database_url, queue, start_in_thread):
    amqp_url = queue
    message_id = send(amqp_url, {"n": 5})
    consumer = sample_consumer.runner(database_url, amqp_url)
    start_in_thread(consumer)
    wait_until(lambda: effects(database_url) == [5], what="the message")
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        inbox = sample_consumer.SampleInbox
        rows = session.execute(select(inbox.queue, inbox.message_id, inbox.message_type)).all()
        assert [tuple(r) for r in rows] == [(QUEUE, message_id, "order.created")]
        assert session.scalar(select(func.count()).select_from(inbox)) == 1
    engine.dispose()


LONG_AGO = timedelta(days=30)  # past the inbox's default retention (14 days)
LATELY = timedelta(days=1)


OTHER_QUEUE = "coupons.orders"


def inbox_rows(database_url: str, queue: str, *conditions) -> int:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            inbox = sample_consumer.SampleInbox
            query = select(func.count()).select_from(inbox).where(inbox.queue == queue)
            return session.scalar(query.where(*conditions)) or 0
    finally:
        engine.dispose()


def remember(database_url: str, queue: str, message_ids: list[str], handled_ago: timedelta):
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine).begin() as session:
            session.add_all(
                sample_consumer.SampleInbox(
                    queue=queue,
                    message_id=message_id,
                    message_type="order.created",
                    handled_at=utcnow() - handled_ago,
                )
                for message_id in message_ids
            )
    finally:
        engine.dispose()


def test_the_consumer_prunes_only_its_own_old_inbox_rows_and_still_knows_the_recent_ones(
    database_url, amqp_url, start_in_thread
):
    declare(amqp_url)
    consumer = sample_consumer.runner(database_url, amqp_url, prune_batch_size=200)
    remember(database_url, sample_consumer.QUEUE, [f"old-{n}" for n in range(700)], LONG_AGO)
    remember(database_url, sample_consumer.QUEUE, ["recent"], LATELY)
    remember(database_url, OTHER_QUEUE, [f"old-{n}" for n in range(5)], LONG_AGO)

    send(amqp_url, {"n": 1}, message_id="recent")  # handled a day ago: a duplicate
    send(amqp_url, {"n": 2})
    start_in_thread(consumer)
    wait_until(
        lambda: consumer.stats.handled + consumer.stats.duplicates == 2, what="both deliveries"
    )
    wait_until(
        lambda: inbox_rows(database_url, sample_consumer.QUEUE) == 2,
        what="the old rows of the queue to be pruned, 200 at a time between messages",
    )
    assert consumer.stats.duplicates == 1
    assert effects(database_url) == [2]
    assert inbox_rows(database_url, OTHER_QUEUE) == 5, "another queue's rows are not its own"
    assert consumer.pruner.prune_once() == 0
