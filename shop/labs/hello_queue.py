"""A producer publishes through the default exchange, whose routing key is a queue's name;
a consumer takes the message from that queue. The queue must exist first: declaring is
idempotent, so usually both sides declare it. A message published to a queue nobody
declared goes nowhere, and the broker says nothing, unless the publisher asks: with
`mandatory` set, a message that no queue takes comes back to the publisher (Basic.Return),
and with publisher confirms on, pika's BlockingChannel raises `UnroutableError` before the
publisher moves on.
"""

from __future__ import annotations

import pika

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, message_count, wait_for

LAB = Lab(
    name="hello-queue",
    title="Hello queue: a producer, a queue, a consumer",
    question="What becomes of a message sent to a queue that nobody declared?",
    sound=Variant(
        "mandatory",
        "publishes with `mandatory` and publisher confirms: an unroutable message comes back",
    ),
    broken=Variant(
        "fire and forget",
        "publishes without `mandatory`: the broker drops an unroutable message in silence",
    ),
    guarantee="every message reaches a queue, or its publisher learns that it did not",
    holds=lambda figures: figures["delivered"] == figures["sent"] and figures["vanished"] == 0,
    outcome=(
        "{delivered} of {sent} messages to the declared queue `hello` delivered; of {strays} "
        "sent to the undeclared `nobody-declared-this`, {returned} came back to the "
        "publisher and {vanished} vanished unnoticed"
    ),
    read=(
        "messaging/publisher.py: every event is published with `mandatory=True` and confirms, "
        "so an event no queue is bound for is an error the relay logs and retries, never "
        "silence (only the broadcast `flash_sale.sold_out` goes without)."
    ),
)

MESSAGES = 5
STRAYS = 3


@LAB.measure
def measure(run: Run) -> Figures:
    consumer = Worker(
        run.amqp_url, lambda channel: channel.queue_declare("hello").method.queue, name="consumer"
    ).start()
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.queue_declare("hello")  # idempotent: the consumer declared it too
    channel.confirm_delivery()
    for n in range(MESSAGES):
        channel.basic_publish("", "hello", f"hello {n}".encode())
    wait_for(lambda: consumer.count >= MESSAGES, 10)
    consumer.stop()
    run.say(f"published {MESSAGES} messages to `hello`, which a consumer declared and consumes")

    returned = 0
    for n in range(STRAYS):
        try:
            channel.basic_publish(
                "", "nobody-declared-this", f"stray {n}".encode(), mandatory=not run.broken
            )
        except pika.exceptions.UnroutableError:
            returned += 1
    connection.close()
    run.say(
        f"published {STRAYS} messages to `nobody-declared-this`, "
        + ("without `mandatory`" if run.broken else "with `mandatory`")
    )
    # No queue of that name exists, so nothing can hold a message that did not come back.
    held = message_count(run.amqp_url, "nobody-declared-this") or 0
    return {
        "sent": MESSAGES,
        "delivered": consumer.count,
        "strays": STRAYS,
        "returned": returned,
        "vanished": STRAYS - returned - held,
    }
