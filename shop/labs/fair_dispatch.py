"""Round-robin is not fair when the workers are not equal. Without a prefetch limit the
broker pushes every message to a consumer as soon as it can, alternating between them,
before either has finished its first: a slow worker gets as many tasks as a fast one, and
the whole batch waits for the slow one. With `basic_qos(prefetch_count=1)` a worker gets
its next task only after it acked the last one, so the fast worker comes back for more
and does most of the work.

The shop's consumers use a prefetch too (200: the batch in hand, a hundred messages, and
the next one already on its way, so a worker never waits a round trip for work; a bound,
so no worker hoards a backlog another could take).
"""

from __future__ import annotations

import time

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, wait_for

LAB = Lab(
    name="fair-dispatch",
    title="Fair dispatch: a slow and a fast worker",
    question="One worker is forty times slower than the other: who does the work?",
    sound=Variant(
        "prefetch 1", "each worker sets `basic_qos(prefetch_count=1)`: one unacked task at most"
    ),
    broken=Variant("no prefetch limit", "the broker pushes tasks to both workers in turn"),
    guarantee="the fast worker does more than twice the slow one's share",
    holds=lambda figures: figures["fast_did"] > 2 * figures["slow_did"],
    outcome=(
        "the fast worker did {fast_did} of {tasks} tasks, the slow one {slow_did}; "
        "the batch took {makespan_s} s"
    ),
    read=(
        "messaging/queue_worker.py: QueueWorker sets `basic_qos(prefetch_count=...)` before "
        "it consumes (200: batches of 100, each handled in one transaction, then acked at "
        "once, while the broker sends the next)."
    ),
)

TASKS = 20
SLOW_SECONDS, FAST_SECONDS = 0.2, 0.005


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.queue_declare("tasks", durable=True)
    prefetch = 0 if run.broken else 1
    slow = Worker(
        run.amqp_url, "tasks", name="slow", prefetch=prefetch, seconds_per_message=SLOW_SECONDS
    ).start()
    fast = Worker(
        run.amqp_url, "tasks", name="fast", prefetch=prefetch, seconds_per_message=FAST_SECONDS
    ).start()
    run.say(
        f"started a slow worker ({SLOW_SECONDS * 1000:.0f} ms a task) and a fast one "
        f"({FAST_SECONDS * 1000:.0f} ms), "
        + ("without a prefetch limit" if run.broken else "each with prefetch 1")
    )
    started = time.monotonic()
    for n in range(TASKS):
        channel.basic_publish("", "tasks", f"task {n}".encode())
    connection.close()
    wait_for(lambda: slow.count + fast.count >= TASKS, 30)
    slow.stop()
    fast.stop()
    finished = max(at for worker in (slow, fast) for at, _ in worker.handled)
    run.say(f"published {TASKS} tasks and waited until both workers had done them all")
    return {
        "tasks": TASKS,
        "slow_did": slow.count,
        "fast_did": fast.count,
        "makespan_s": round(finished - started, 2),
    }
