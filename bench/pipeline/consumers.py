"""(c) each consumer's messages per second: the service's real handler in a ConsumerRunner
beside plain pika, on the same messages.

For each consumer of bench/parts.py: N messages of the right types (events.py) are loaded
into its quorum queue on a fresh vhost, then a ConsumerRunner with the service's real
handler and a fresh migrated SQLite database drains them in batches of up to half the prefetch
(inbox rows + a handler call per message + one commit + one ack). Beside it, plain pika
drains the same N messages from the same kind of queue with basic_ack and no database, with
the same prefetch. The clock runs from the first delivery to the last ack; ratio = runner
rate / raw rate. `profile_consumer` runs one again under cProfile (profile.py reads it).
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from bench import parts
from bench.cpu import OTHERS, CpuMeter, watched_processes
from bench.pipeline.events import MESSAGES
from bench.pipeline.profile import Profile
from bench.support import BenchFailure, fresh_vhost, wait_for_depth
from messaging.connection import close_quietly, open_connection
from messaging.envelope import Envelope

PREFETCH = parts.PREFETCH  # QueueWorker's (a batch's size); raw pika uses the same
CONSUMERS = list(parts.CONSUMERS.values())  # one row each, in this order


def preload(amqp_url: str, queue: str, messages: list[Envelope]) -> None:
    """Declare the topology and put `messages` straight into `queue`; wait until all landed."""
    connection = open_connection(amqp_url, "bench: preload")
    try:
        channel = connection.channel()
        parts.declare_shop_topology(channel)
        for message in messages:
            channel.basic_publish("", queue, message.encoded_body(), message.properties())
        wait_for_depth(connection, queue, len(messages))
    finally:
        close_quietly(connection)


def raw_consume(amqp_url: str, queue: str, count: int) -> float:
    """Plain pika: consume and basic_ack `count` messages; seconds from first to last."""
    connection = open_connection(amqp_url, "bench: raw consumer")
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        first = 0.0
        deliveries = channel.consume(queue, inactivity_timeout=10)
        for done, (method, _properties, _body) in enumerate(deliveries, start=1):
            if method is None:
                raise BenchFailure(f"{queue}: raw pika got only {done - 1} of {count} messages")
            if done == 1:
                first = time.perf_counter()
            channel.basic_ack(method.delivery_tag)
            if done == count:
                break
        seconds = time.perf_counter() - first
        channel.cancel()
        return seconds
    finally:
        close_quietly(connection)


def run_consumer(
    consumer: parts.Consumer,
    engine: Engine,
    amqp_url: str,
    count: int,
    profiler: cProfile.Profile | None = None,
) -> float:
    """Run the service's ConsumerRunner in this thread until it handled `count` messages;
    return the seconds from its first delivery until the last one was acked."""
    finished = threading.Event()
    runner = parts.timed_runner(consumer, engine, amqp_url, count, finished, PREFETCH, profiler)
    watchdog = threading.Timer(120, finished.set)  # never hang on a consumer that stalls
    watchdog.start()
    if profiler is not None:
        profiler.enable()
    try:
        runner.run(finished)
    finally:
        if profiler is not None:
            profiler.disable()
        watchdog.cancel()
    stats = runner.stats
    if stats.handled != count:
        raise BenchFailure(f"{consumer.name}: handled {stats.handled} of {count} ({stats})")
    return runner.last - runner.first


@dataclass
class ConsumerResult:
    consumer: parts.Consumer
    messages: int
    runner_seconds: float
    raw_seconds: float
    others: float  # % of a core other processes used meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.runner_seconds

    @property
    def raw_rate(self) -> float:
        return self.messages / self.raw_seconds

    @property
    def ratio(self) -> float:
        return self.rate / self.raw_rate


@contextmanager
def service_database(consumer: parts.Consumer) -> Iterator[Engine]:
    """A fresh, migrated SQLite database for the case's service."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-db-") as folder:
        url = f"sqlite:///{Path(folder) / 'service.db'}"
        with parts.migrated_engine(consumer.service, url) as engine:
            yield engine


def measure_consumer(consumer: parts.Consumer, count: int) -> ConsumerResult:
    meter = CpuMeter(watched_processes(None))
    with service_database(consumer) as engine:
        messages = MESSAGES[consumer.name](engine, count)
        with fresh_vhost("pipeline-raw") as amqp_url:
            preload(amqp_url, consumer.queue, messages)
            raw_seconds = raw_consume(amqp_url, consumer.queue, len(messages))
        with fresh_vhost("pipeline-runner") as amqp_url:
            preload(amqp_url, consumer.queue, messages)
            runner_seconds = run_consumer(consumer, engine, amqp_url, len(messages))
    others = meter.read().percent()[OTHERS]
    return ConsumerResult(consumer, len(messages), runner_seconds, raw_seconds, others)


def profile_consumer(consumer: parts.Consumer, count: int) -> Profile:
    """The same run as measure_consumer's, under cProfile (which slows Python code down)."""
    profiler = cProfile.Profile()
    with service_database(consumer) as engine, fresh_vhost("pipeline-profile") as amqp_url:
        messages = MESSAGES[consumer.name](engine, count)
        preload(amqp_url, consumer.queue, messages)
        run_consumer(consumer, engine, amqp_url, len(messages), profiler)
    return Profile(consumer, len(messages), pstats.Stats(profiler))
