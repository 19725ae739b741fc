"""Topics: a topic exchange matches routing keys of dot-separated words against binding
patterns, where `*` stands for exactly one word and `#` for zero or more. With the
tutorial's bindings (Q1: `*.orange.*`; Q2: `*.*.rabbit` and `lazy.#`) each key below
reaches the queues the table says; a key that matches two bindings of one queue is
delivered to it once, and a key no pattern matches (four words where a pattern has three)
is dropped.

The broken variant binds Q2 with `lazy.*` where `lazy.#` was meant: it still looks
right for `lazy.dog`, and silently misses every longer lazy key.
"""

from __future__ import annotations

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, settle

LAB = Lab(
    name="topics",
    title="Topics: `*` and `#` bindings",
    question="Which queue gets which routing key, with `*` and `#` in the bindings?",
    sound=Variant("`lazy.#`", "Q2 binds `*.*.rabbit` and `lazy.#`, as in the tutorial"),
    broken=Variant("`lazy.*`", "Q2 binds `lazy.*` instead of `lazy.#`"),
    guarantee="every key reaches exactly the queues whose patterns it matches",
    holds=lambda figures: figures["right"] == figures["keys"],
    outcome=(
        "{right} of {keys} routing keys reached exactly the queues the tutorial says; "
        "misrouted: {misrouted_keys}"
    ),
    read=(
        "messaging/topology.py: `orders.read-model` binds `coupon.#` and `notification.#`, "
        "each web process `flash_sale.#`, on the topic exchange `shop.events`."
    ),
)

BINDINGS = {"Q1": ("*.orange.*",), "Q2": ("*.*.rabbit", "lazy.#")}
BROKEN_BINDINGS = {"Q1": ("*.orange.*",), "Q2": ("*.*.rabbit", "lazy.*")}
# The tutorial's answer: key -> the queues it must reach.
EXPECTED = {
    "quick.orange.rabbit": ("Q1", "Q2"),
    "lazy.orange.elephant": ("Q1", "Q2"),
    "quick.orange.fox": ("Q1",),
    "lazy.brown.fox": ("Q2",),
    "lazy.pink.rabbit": ("Q2",),  # matches both of Q2's bindings: delivered once
    "lazy.dog": ("Q2",),
    "quick.brown.fox": (),
    "orange": (),
    "quick.orange.male.rabbit": (),
    "lazy.orange.male.rabbit": ("Q2",),
}


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "publisher")
    channel = connection.channel()
    channel.exchange_declare("topic_logs", exchange_type="topic")
    bindings = BROKEN_BINDINGS if run.broken else BINDINGS
    for queue, patterns in bindings.items():
        channel.queue_declare(queue)
        for pattern in patterns:
            channel.queue_bind(queue, "topic_logs", routing_key=pattern)
    run.say("bound " + "; ".join(f"{q}: {', '.join(p)}" for q, p in bindings.items()))
    queues = {queue: Worker(run.amqp_url, queue, name=queue).start() for queue in bindings}
    for key in EXPECTED:
        channel.basic_publish("topic_logs", key, key.encode())
    run.say(f"published one message for each of {len(EXPECTED)} routing keys")
    settle(run.amqp_url, list(bindings), list(queues.values()))
    for worker in queues.values():
        worker.stop()
    connection.close()

    reached = {
        key: tuple(q for q, worker in queues.items() for body in worker.bodies() if body == key)
        for key in (key.encode() for key in EXPECTED)
    }
    routed = {key.decode(): "+".join(queues) or "none" for key, queues in reached.items()}
    wrong = [key for key in EXPECTED if routed[key] != ("+".join(EXPECTED[key]) or "none")]
    return {
        "keys": len(EXPECTED),
        "right": len(EXPECTED) - len(wrong),
        "routed": routed,
        "misrouted_keys": ", ".join(
            f"{key} reached {routed[key]}, not {'+'.join(EXPECTED[key]) or 'none'}" for key in wrong
        )
        or "none",
    }
