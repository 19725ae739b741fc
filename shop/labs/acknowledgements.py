"""A worker process is SIGKILLed halfway through a queue of tasks. With automatic
acknowledgement (`auto_ack=True`) the broker forgets a message the moment it sends it, and
it sends as many as the connection takes, since no prefetch limit applies: every task the
worker had received but not finished dies with it. With manual acks the worker acks each
task after its work is done; the broker keeps every unacked task and, when the worker's
connection drops, puts it back in the queue for the next worker. Nothing is lost; a task
the worker finished but had not acked yet is done twice, which is why consumers must be
idempotent (the inbox lab).

The worker here is a real process, killed with SIGKILL: no handler runs, no goodbye.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shop.labs.lab import Figures, Lab, Run, Variant, connect, take_all, wait_for

LAB = Lab(
    name="acknowledgements",
    title="Acknowledgements: a worker killed mid-stream",
    question="A worker is SIGKILLed in the middle of its tasks: which tasks are lost?",
    sound=Variant("manual ack", "the worker acks each task after its work (prefetch 10)"),
    broken=Variant("auto-ack", "the broker forgets each task as soon as it has sent it"),
    guarantee="no task is lost: each is done, or back in the queue",
    holds=lambda figures: figures["lost"] == 0,
    outcome=(
        "{lost} of {tasks} tasks lost when the worker was SIGKILLed after {done} "
        "({back_in_queue} back in the queue, {done_and_back} of them done already)"
    ),
    read=(
        "messaging/consumer.py: ConsumerRunner acks only after the handler's transaction "
        "committed, so a crash at any point means a redelivery, never a loss."
    ),
    by_hand="""\
`ps aux | grep 'shop run inventory'`, then `kill -9 <pid>` while you place orders. `shop up`
says it exited with code -9 and restarts it; the orders wait in `inventory.orders` (the
messages it had taken but not acked go back to the queue) and settle once it is back, each
exactly once (`GET /api/orders/{id}`: one `inventory.reserved` in every timeline). Now try
`kill -TERM <pid>` and compare the log: it finishes the message in hand and stops cleanly.
""",
)

TASKS = 200
KILL_AFTER = 20
SECONDS_PER_TASK = 0.01
PREFETCH = 10


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "producer")
    channel = connection.channel()
    channel.queue_declare("tasks", durable=True)
    for n in range(TASKS):
        channel.basic_publish("", "tasks", str(n).encode())
    run.say(f"published {TASKS} tasks to `tasks`")

    done_file = run.workdir / "done.txt"
    done_file.touch()
    mode = "auto-ack" if run.broken else "manual-ack"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_COMMAND, run.amqp_url, "tasks", mode, str(done_file)]
    )
    try:
        wait_for(lambda: len(done(done_file)) >= KILL_AFTER, 30)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    finished = done(done_file)
    run.say(f"started a worker process ({mode}), SIGKILLed it once it had done {len(finished)}")

    # The broker requeues a dead consumer's unacked tasks once it sees the connection gone.
    wait_for(lambda: channel.queue_declare("tasks", passive=True).method.consumer_count == 0, 10)
    connection.close()
    left = {body.decode() for _, body in take_all(run.amqp_url, "tasks")}
    run.say(f"counted the tasks back in the queue: {len(left)}")
    return {
        "tasks": TASKS,
        "done": len(finished),
        "back_in_queue": len(left),
        "done_and_back": len(finished & left),
        "lost": TASKS - len(finished | left),
    }


def done(done_file: Path) -> set[str]:
    return set(done_file.read_text().split())


# The worker process: consume, work, note the task as done, ack (unless auto-ack).
WORKER_COMMAND = "import sys; from shop.labs.acknowledgements import work; work(*sys.argv[1:])"


def work(amqp_url: str, queue: str, mode: str, done_file: str) -> None:
    connection = connect(amqp_url, f"worker ({mode})")
    channel = connection.channel()
    auto_ack = mode == "auto-ack"
    if not auto_ack:
        channel.basic_qos(prefetch_count=PREFETCH)  # auto-ack ignores any prefetch limit
    with open(done_file, "a", buffering=1) as done_log:

        def on_task(channel, method, _properties, body: bytes) -> None:  # type: ignore[no-untyped-def]
            time.sleep(SECONDS_PER_TASK)  # the work
            done_log.write(body.decode() + "\n")
            if not auto_ack:
                channel.basic_ack(method.delivery_tag)

        channel.basic_consume(queue, on_task, auto_ack=auto_ack)
        channel.start_consuming()
