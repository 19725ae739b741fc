"""A publisher that does not use confirms learns nothing of what became of its messages:
`basic_publish` returns once the bytes are in the socket. When the connection to the
broker stalls and then drops mid-burst (the broker died, a link failed), everything
written in between is gone, and the publisher, which saw no error for those messages,
believes they were sent. It notices only the next publish, which fails.

With publisher confirms the broker acks each message once it has taken responsibility for
it (routed, and written where the queue keeps it); the shop's ConfirmingPublisher writes
a whole batch and waits once for the acks. A batch that is not confirmed is published
again after the reconnect: nothing is lost, and what was in fact delivered twice is a
duplicate the consumers' inbox absorbs.

The fault here is a TCP proxy between the publisher and the broker that first holds every
byte (the network stalls) and then drops the connection: what a client sees when its
broker goes away mid-burst. The shared broker itself runs on untouched.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from shop.labs import parts
from shop.labs.lab import (
    CannotRun,
    Figures,
    Lab,
    Run,
    Variant,
    connect,
    cuttable,
    take_all,
    wait_for,
)

LAB = Lab(
    name="confirms",
    title="Publisher confirms vs fire-and-forget, the broker lost mid-burst",
    question="The broker connection stalls and drops in the middle of a burst: what got there?",
    sound=Variant(
        "confirms",
        "the shop's ConfirmingPublisher, batches of 100, each batch again until it is confirmed",
    ),
    broken=Variant(
        "fire and forget", "plain `basic_publish`; a publish that raises is tried again"
    ),
    guarantee="every message the publisher counts as sent is in the queue",
    holds=lambda figures: figures["lost"] == 0,
    outcome=(
        "{lost} of {messages} messages lost, though the publisher counted all as sent; "
        "{duplicates} arrived twice (for the inbox to absorb)"
    ),
    read=(
        "messaging/publisher.py (confirms for a whole batch, one wait) and messaging/relay.py "
        "(a row is marked sent only after its confirm); `make bench` shows what confirms cost."
    ),
    by_hand="""\
`make bench` publishes 20,000 events four ways: raw pika without confirms, the relay on
SQLite and PostgreSQL, and one synchronous confirm per message. Read `messaging/publisher.py`
to see why the relay is as fast as unconfirmed publishing while being safe.
""",
)

MESSAGES = 1200
BATCH = 100
STALL_AFTER = 400  # messages sent when the network stalls
STALL_BYTES = 5000  # ... and it drops once this much is held up (or after two seconds)
QUEUE = "lab.events"


class Publisher(threading.Thread):
    """Publishes MESSAGES, reconnecting after a loss; counts what it believes was sent."""

    def __init__(self, amqp_url: str, confirms: bool) -> None:
        super().__init__(name="publisher", daemon=True)
        self.amqp_url = amqp_url
        self.confirms = confirms
        self.envelopes = [
            parts.Envelope.new("lab.event", {"n": n}, correlation_id="lab", app_id="lab")
            for n in range(MESSAGES)
        ]
        self.sent = 0
        self.lost_connection = threading.Event()

    def run(self) -> None:
        while self.sent < MESSAGES:
            try:
                connection = connect(self.amqp_url, "publisher")
                if self.confirms:
                    self.publish_confirmed(connection)
                else:
                    self.fire_and_forget(connection)
                connection.close()
            except (*parts.CONNECTION_ERRORS, parts.PublishFailed):
                self.lost_connection.set()
                time.sleep(0.05)  # reconnect backoff; refused until the broker is back

    def fire_and_forget(self, connection) -> None:  # type: ignore[no-untyped-def]
        channel = connection.channel()
        while self.sent < MESSAGES:
            envelope = self.envelopes[self.sent]
            channel.basic_publish("", QUEUE, envelope.encoded_body(), envelope.properties())
            self.sent += 1  # no error: as far as this publisher knows, it is sent

    def publish_confirmed(self, connection) -> None:  # type: ignore[no-untyped-def]
        publisher = parts.confirming_publisher(connection)
        while self.sent < MESSAGES:
            batch = self.envelopes[self.sent : self.sent + BATCH]
            outcomes = publisher.publish_batch([parts.event_to_queue(QUEUE, e) for e in batch])
            if all(outcome.confirmed for outcome in outcomes):
                self.sent += len(batch)  # else: the whole batch again


@LAB.measure
def measure(run: Run) -> Figures:
    channel = (setup := connect(run.amqp_url, "lab: setup")).channel()
    channel.queue_declare(QUEUE, durable=True)
    setup.close()
    with cuttable(run.amqp_url) as (proxy, through_proxy):
        publisher = Publisher(through_proxy, confirms=not run.broken)
        publisher.start()
        wait_for(lambda: publisher.sent >= STALL_AFTER, 30)
        proxy.pause()
        wait_for(lambda: proxy.held >= STALL_BYTES, 2.0)
        proxy.cut()
        proxy.resume()  # what it held died with the connections; new ones may flow again
        run.say(
            f"published {MESSAGES} messages; after {STALL_AFTER} the connection stalled "
            f"({proxy.held} bytes held up) and dropped"
        )
        wait_for(publisher.lost_connection.is_set, 15)
        proxy.restore()
        publisher.join(timeout=60)
        if publisher.is_alive():
            raise CannotRun("the publisher could not reconnect within 60 s: is the broker up?")
        run.say(f"the publisher reconnected and went on; it counted {publisher.sent} as sent")
    delivered = Counter(properties.message_id for properties, _ in take_all(run.amqp_url, QUEUE))
    return {
        "messages": MESSAGES,
        "counted_as_sent": publisher.sent,
        "in_queue": len(delivered),
        "lost": MESSAGES - len(delivered),
        "duplicates": sum(delivered.values()) - len(delivered),
    }
