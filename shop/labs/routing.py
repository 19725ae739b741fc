"""Routing: a direct exchange delivers a message to the queues bound with exactly its
routing key. The logger publishes each line with its severity as the key; one subscriber
binds `error` only (it writes errors to disk), another binds `info`, `warning` and
`error` (the console). A `debug` line nobody bound is dropped.

The broken variant declares the exchange as a fanout, which ignores routing keys: the same
bindings now bring every line to every queue, debug included.
"""

from __future__ import annotations

from collections import Counter

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, settle, wait_for

LAB = Lab(
    name="routing",
    title="Routing: a direct exchange by severity",
    question="Each subscriber binds the severities it wants: does it get those and no others?",
    sound=Variant("direct", "the exchange `direct_logs` is a direct exchange"),
    broken=Variant("fanout", "the same exchange and bindings, but a fanout exchange"),
    guarantee="each queue gets exactly the severities it bound",
    holds=lambda figures: figures["unwanted"] == 0 and figures["missing"] == 0,
    outcome=(
        "the disk subscriber (binds error) got {disk}; the console (binds info, warning, "
        "error) got {console}; {unwanted} lines reached a queue that did not bind their "
        "severity, {missing} missed one that did"
    ),
    read=(
        "messaging/dead_letters.py and messaging/topology.py: `shop.dead-letter` is a direct "
        "exchange; each work queue dead-letters with its own name as the key into its own "
        "`.dead` queue."
    ),
)

LINES = {"info": 6, "warning": 4, "error": 3, "debug": 2}
BINDS = {"disk": ("error",), "console": ("info", "warning", "error")}


def subscriber_queue(binds: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def declare(channel) -> str:  # type: ignore[no-untyped-def]
        queue = channel.queue_declare("", exclusive=True).method.queue
        for severity in binds:
            channel.queue_bind(queue, "direct_logs", routing_key=severity)
        return queue

    return declare


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "logger")
    channel = connection.channel()
    channel.exchange_declare("direct_logs", exchange_type="fanout" if run.broken else "direct")
    subscribers = {
        name: Worker(run.amqp_url, subscriber_queue(binds), name=name).start()
        for name, binds in BINDS.items()
    }
    run.say("the subscribers bound: " + "; ".join(f"{n}: {', '.join(b)}" for n, b in BINDS.items()))
    for severity, count in LINES.items():
        for n in range(count):
            channel.basic_publish("direct_logs", severity, f"{severity} {n}".encode())
    connection.close()
    run.say("published " + ", ".join(f"{count} {severity}" for severity, count in LINES.items()))
    wanted = {name: sum(LINES[s] for s in binds) for name, binds in BINDS.items()}
    wait_for(lambda: all(subscribers[n].count >= wanted[n] for n in BINDS), 10)
    settle(run.amqp_url, [], list(subscribers.values()))
    for subscriber in subscribers.values():
        subscriber.stop()

    got = {
        name: Counter(body.decode().split()[0] for body in subscribers[name].bodies())
        for name in BINDS
    }
    return {
        "disk": ", ".join(f"{n} {severity}" for severity, n in got["disk"].items()),
        "console": ", ".join(f"{n} {severity}" for severity, n in got["console"].items()),
        "unwanted": sum(
            n for name, counts in got.items() for s, n in counts.items() if s not in BINDS[name]
        ),
        "missing": sum(
            max(0, LINES[s] - got[name][s]) for name, binds in BINDS.items() for s in binds
        ),
    }
