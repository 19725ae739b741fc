"""What survives a broker restart is decided twice: by the queue (durable or not) and by
each message (persistent, `delivery_mode=2`, or transient). A non-durable queue is gone
after a restart, with everything in it. A durable queue comes back, but the transient
messages it held do not. Only persistent messages in a durable queue survive, and a
quorum queue (replicated, written to disk before it confirms; every work queue of the
shop is one) keeps every message it confirmed.

This lab restarts a broker, so it runs on a throwaway node of its own (started from the
distribution's rabbitmq-server on free ports) and never touches the shared one.
"""

from __future__ import annotations

import pika

from shop.labs.lab import Figures, Lab, Run, Variant, connect, message_count, wait_for

LAB = Lab(
    name="durability",
    title="Durability: a broker restart",
    question="The broker restarts: which queues and messages are still there?",
    sound=Variant(
        "durable quorum queue, persistent messages",
        "publishes persistent messages, with confirms, to a durable quorum queue",
    ),
    broken=Variant(
        "transient",
        "publishes transient messages, with confirms, to a non-durable queue and to a "
        "durable classic queue",
    ),
    guarantee="every confirmed message is still there after the restart",
    holds=lambda figures: figures["survived"] == figures["published"],
    outcome=(
        "{survived} of {published} confirmed messages survived the broker restart; "
        "{queues_gone} of {queues} queues were gone"
    ),
    read=(
        "messaging/topology.py (durable quorum queues) and messaging/envelope.py "
        "(`delivery_mode=Persistent` on every message)."
    ),
    needs_broker_node=True,
)

MESSAGES = 100
# queue: (its arguments to queue_declare, the messages' delivery mode)
SOUND = {"orders": ({"durable": True, "arguments": {"x-queue-type": "quorum"}}, 2)}
BROKEN = {
    "logs": ({"durable": False}, 1),
    "orders-transient": ({"durable": True}, 1),
}


@LAB.measure
def measure(run: Run) -> Figures:
    queues = BROKEN if run.broken else SOUND
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.confirm_delivery()
    for queue, (declaration, delivery_mode) in queues.items():
        channel.queue_declare(queue, **declaration)
        for n in range(MESSAGES):
            properties = pika.BasicProperties(delivery_mode=delivery_mode)
            channel.basic_publish("", queue, f"message {n}".encode(), properties)
        run.say(f"published {MESSAGES} {describe(declaration, delivery_mode)}, all confirmed")
    connection.close()

    run.restart_broker()
    run.say("restarted the broker (rabbitmqctl stop_app, start_app)")
    if not run.broken:  # a quorum queue elects its leader a moment after the node is up
        wait_for(lambda: message_count(run.amqp_url, "orders") == MESSAGES, 30, pause=0.2)
    counts = {queue: message_count(run.amqp_url, queue) for queue in queues}
    run.say(
        "counted: " + ", ".join(f"`{q}` {'gone' if n is None else n}" for q, n in counts.items())
    )
    return {
        "queues": len(queues),
        "queues_gone": sum(1 for count in counts.values() if count is None),
        "published": MESSAGES * len(queues),
        "survived": sum(count or 0 for count in counts.values()),
    }


def describe(declaration: dict, delivery_mode: int) -> str:  # type: ignore[type-arg]
    kind = "persistent" if delivery_mode == 2 else "transient"
    arguments = declaration.get("arguments", {})
    queue = "quorum" if arguments.get("x-queue-type") == "quorum" else "classic"
    durable = "durable" if declaration["durable"] else "non-durable"
    return f"{kind} messages to a {durable} {queue} queue"
