"""A work queue spreads tasks among workers: three workers consume the same queue, and
RabbitMQ hands each message to one of them, in turn (round-robin). Each task is done once,
by whichever worker got it; to go faster, start more workers. These are competing
consumers, and every work queue of the shop is one.

The broken variant makes a common mistake: each worker declares a queue of its own (a
server-named one, as subscribers do in the publish/subscribe tutorial) bound to a fanout
exchange. Now every worker receives every task, and every task is done three times.
"""

from __future__ import annotations

from collections import Counter

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, settle, wait_for

LAB = Lab(
    name="work-queue",
    title="Work queue: round-robin dispatch among three workers",
    question="Three workers take tasks from the same place: does each task get done once?",
    sound=Variant("one shared queue", "three workers consume the one durable queue `tasks`"),
    broken=Variant(
        "a queue per worker",
        "each worker declares its own queue, bound to a fanout exchange `tasks`",
    ),
    guarantee="every task is done exactly once, and every worker does its share",
    holds=lambda figures: (
        figures["done_twice_or_more"] == 0
        and figures["not_done"] == 0
        and min(figures["per_worker"]) > 0
    ),
    outcome=(
        "{tasks} tasks, handled {handled} times in all: per worker {per_worker}; "
        "{done_twice_or_more} done more than once, {not_done} not done"
    ),
    read=(
        "messaging/topology.py: each work queue is one durable queue that every process of "
        "its service consumes, so several processes of one service share its work."
    ),
)

TASKS = 30
WORKERS = 3


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    if run.broken:
        channel.exchange_declare("tasks", exchange_type="fanout")

        def declare(worker_channel) -> str:  # type: ignore[no-untyped-def]
            queue = worker_channel.queue_declare("", exclusive=True).method.queue
            worker_channel.queue_bind(queue, "tasks")
            return queue

        workers = [Worker(run.amqp_url, declare, name=f"worker {n}") for n in range(WORKERS)]
        exchange, routing_key = "tasks", ""
    else:
        channel.queue_declare("tasks", durable=True)
        workers = [Worker(run.amqp_url, "tasks", name=f"worker {n}") for n in range(WORKERS)]
        exchange, routing_key = "", "tasks"
    for worker in workers:
        worker.start()
    run.say(
        f"started {WORKERS} workers on "
        + ("a queue each, bound to the fanout exchange `tasks`" if run.broken else "`tasks`")
    )

    for n in range(TASKS):
        channel.basic_publish(exchange, routing_key, f"task {n}".encode())
    connection.close()
    run.say(f"published {TASKS} tasks")
    every_task = {f"task {n}".encode() for n in range(TASKS)}
    wait_for(lambda: every_task <= {b for w in workers for b in w.bodies()}, 10)
    settle(run.amqp_url, [] if run.broken else ["tasks"], workers)  # exclusive: theirs only
    for worker in workers:
        worker.stop()

    times_done = Counter(body for worker in workers for body in worker.bodies())
    return {
        "tasks": TASKS,
        "handled": sum(times_done.values()),
        "per_worker": [worker.count for worker in workers],
        "done_twice_or_more": sum(1 for count in times_done.values() if count > 1),
        "not_done": len(every_task - set(times_done)),
    }
