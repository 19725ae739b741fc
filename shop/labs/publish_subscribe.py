"""Publish/subscribe: a fanout exchange copies every message to every queue bound to it.
Each subscriber declares a queue of its own (server-named, exclusive: it goes away with
its connection) and binds it to the exchange `logs`, so each gets every log line. The
exchange keeps nothing: a subscriber that binds later gets only what is published after,
none of the past. A log that must be read again later belongs in a durable queue (or a
stream), not in an exchange.

The broken variant makes the opposite mistake to the work-queue lab's: the subscribers
share one named queue, so they compete for the lines and each sees about a third.
"""

from __future__ import annotations

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, settle, wait_for

LAB = Lab(
    name="publish-subscribe",
    title="Publish/subscribe: a fanout exchange",
    question="Three subscribers listen to the log: does each one see every line?",
    sound=Variant("a queue each", "each subscriber binds its own exclusive queue to `logs`"),
    broken=Variant("one shared queue", "the subscribers share one queue bound to `logs`"),
    guarantee="every subscriber gets every line published while it listens",
    holds=lambda figures: min(figures["per_subscriber"]) == figures["lines"],
    outcome=(
        "{lines} log lines; per subscriber {per_subscriber}; a subscriber that came later got "
        "{late_got_of_the_past} of the past and {late_got_new} of {new_lines} new ones"
    ),
    read=(
        "messaging/background.py: BroadcastListener, the shop's one subscriber of this kind "
        "(each web process hears `flash_sale.sold_out` on its own server-named queue)."
    ),
)

SUBSCRIBERS = 3
LINES = 12
NEW_LINES = 2


def own_queue(channel) -> str:  # type: ignore[no-untyped-def]
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "logs")
    return queue


def shared_queue(channel) -> str:  # type: ignore[no-untyped-def]
    channel.queue_declare("log-lines")
    channel.queue_bind("log-lines", "logs")
    return "log-lines"


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "publisher")
    channel = connection.channel()
    channel.exchange_declare("logs", exchange_type="fanout")
    declare = shared_queue if run.broken else own_queue
    subscribers = [
        Worker(run.amqp_url, declare, name=f"subscriber {n}").start() for n in range(SUBSCRIBERS)
    ]
    for n in range(LINES):
        channel.basic_publish("logs", "", f"line {n}".encode())
    run.say(f"{SUBSCRIBERS} subscribers listen; published {LINES} lines to the fanout `logs`")
    wait_for(lambda: sum(s.count for s in subscribers) >= LINES, 10)
    settle(run.amqp_url, ["log-lines"] if run.broken else [], subscribers)

    late = Worker(run.amqp_url, own_queue, name="late subscriber").start()
    for n in range(NEW_LINES):
        channel.basic_publish("logs", "", f"new line {n}".encode())
    run.say(f"a late subscriber bound its queue; then {NEW_LINES} new lines were published")
    wait_for(lambda: late.count >= NEW_LINES, 10)
    settle(run.amqp_url, ["log-lines"] if run.broken else [], [*subscribers, late])
    connection.close()
    for subscriber in [*subscribers, late]:
        subscriber.stop()

    old = [body for body in late.bodies() if body.startswith(b"line")]
    return {
        "lines": LINES,
        "per_subscriber": [
            sum(1 for body in s.bodies() if body.startswith(b"line")) for s in subscribers
        ],
        "late_got_of_the_past": len(old),
        "late_got_new": late.count - len(old),
        "new_lines": NEW_LINES,
    }
