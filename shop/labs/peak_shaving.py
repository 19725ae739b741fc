"""A burst of requests arrives far faster than the worker behind them can go. An unbounded
queue takes the whole burst: nobody is told no, memory grows with the backlog, and the
last request waits for everything before it (its wait grows with the burst, not with
what the shop can do). A bounded queue (`x-max-length` with `x-overflow: reject-publish`,
the shape of `flash-sale.requests`) holds at most its limit; the broker refuses each
publish beyond it, and the publisher learns so from its confirm (a nack), so the web app
can answer 429 at once instead of promising what it cannot keep. Whatever was admitted
waits at most the limit's worth of work.

The burst is published as the shop's web processes publish (the ConfirmingPublisher, a
batch at a time); the worker handles one request every few milliseconds. On a quorum
queue (the shop's are) the bound is approximate: publishes already in flight when the
queue fills still get in, here up to one batch beyond the limit.
"""

from __future__ import annotations

import json
import threading
import time

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect, wait_for

LAB = Lab(
    name="peak-shaving",
    title="Peak shaving: a burst into a bounded queue",
    question="A burst of requests meets a much slower worker: who is told no, who waits how long?",
    sound=Variant(
        "bounded", "the queue holds 100 at most (`reject-publish`); the rest are refused at once"
    ),
    broken=Variant("unbounded", "the same queue without a length limit"),
    guarantee=(
        "the queue never holds more than its limit (and what was in flight as it filled), "
        "so no admitted request waits long"
    ),
    holds=lambda figures: figures["peak_depth"] <= figures["limit"] + figures["batch"],
    outcome=(
        "{admitted} of {burst} admitted, {shed} refused at once; the queue peaked at "
        "{peak_depth} ({peak_kib} KiB of bodies); the longest wait of an admitted request "
        "was {worst_wait_s} s"
    ),
    read=(
        "messaging/topology.py (`flash-sale.requests`: x-max-length, reject-publish), "
        "order_service/web/admission.py (a nack becomes a 429) and messaging/background.py (the "
        "web process's batching publisher)."
    ),
    by_hand="""\
Freeze the order process (`kill -STOP <pid>` of `shop run order`: nobody decides tickets
now) and start a burst in another terminal:
`shop loadtest flash-sale --customers 3000 --concurrency 50 --quota 10 --timeout 120`.
It makes its own product and sale. Watch `flash-sale.requests` fill to
FLASH_SALE_QUEUE_LIMIT in `shop status` (or on `/dashboard`), and the 429s take over.
Within the two minutes, `kill -CONT <pid>`: the worker decides every admitted ticket, sells
exactly 10, the rest are LOST with "sold out", and the report's invariants all say ok. Then
read `order_service/web/admission.py`: which requests never touched the broker at all?
""",
)

BURST = 1000
LIMIT = 100
BATCH = 25  # requests that arrive together, published as one batch
SECONDS_PER_REQUEST = 0.002  # the worker's pace
QUEUE = "lab.requests"


@LAB.measure
def measure(run: Run) -> Figures:
    connection = connect(run.amqp_url, "web app")
    parts.declare_bounded_queue(connection.channel(), QUEUE, None if run.broken else LIMIT)
    publisher = parts.confirming_publisher(connection)
    waits: list[float] = []  # seconds from arrival to handling, per admitted request

    def handle(body: bytes) -> None:
        waits.append(time.time() - json.loads(body)["at"])
        time.sleep(SECONDS_PER_REQUEST)  # the work

    worker = Worker(run.amqp_url, QUEUE, name="worker", prefetch=10, work=handle).start()
    depth = DepthSampler(run.amqp_url)
    admitted = 0
    for start in range(0, BURST, BATCH):
        requests = [request(n) for n in range(start, start + BATCH)]
        outcomes = publisher.publish_batch([parts.event_to_queue(QUEUE, r) for r in requests])
        admitted += sum(1 for outcome in outcomes if outcome.confirmed)
    connection.close()
    run.say(f"a burst of {BURST} requests, {BATCH} at a time, published with confirms")
    wait_for(lambda: worker.count >= admitted, 60, pause=0.05)
    depth.stop()
    worker.stop()
    run.say(f"the worker ({SECONDS_PER_REQUEST * 1000:g} ms a request) handled every admitted one")
    body_bytes = len(request(BURST).encoded_body())
    return {
        "burst": BURST,
        "limit": LIMIT,
        "batch": BATCH,
        "admitted": admitted,
        "shed": BURST - admitted,
        "peak_depth": depth.peak,
        "peak_kib": round(depth.peak * body_bytes / 1024, 1),
        "worst_wait_s": round(max(waits, default=0.0), 2),
    }


def request(n: int) -> parts.Envelope:
    return parts.Envelope.new(
        "lab.request", {"n": n, "at": time.time()}, correlation_id="lab", app_id="lab"
    )


class DepthSampler(threading.Thread):
    """Reads the queue's depth every 10 ms and keeps the highest."""

    def __init__(self, amqp_url: str) -> None:
        super().__init__(name="depth sampler", daemon=True)
        self.amqp_url = amqp_url
        self.peak = 0
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        connection = connect(self.amqp_url, "depth sampler")
        channel = connection.channel()
        while not self._done.wait(0.01):
            self.peak = max(
                self.peak, channel.queue_declare(QUEUE, passive=True).method.message_count
            )
        connection.close()

    def stop(self) -> None:
        self._done.set()
        self.join()
