"""What a lab is, what one run of it sees, and the few helpers every lab shares.

Each lab is one module of shop/labs/ that reads top to bottom: its docstring tells the
story, then

    LAB = Lab(name=..., title=..., question=...,
              sound=Variant("manual ack", "what the sound variant does"),
              broken=Variant("auto-ack", "what the broken one does"),
              guarantee="no task is lost", holds=lambda figures: figures["lost"] == 0,
              outcome="{lost} of {tasks} tasks lost", read="where to look in the code")

    @LAB.measure
    def measure(run: Run) -> Figures:   # set up, run the variant, count what happened

The sound variant must hold and the broken one must not: that is what the lab teaches,
and what `shop lab check` checks. Every figure is measured in the run itself; `outcome` is
a format string over the figures, the one line that says what happened.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika

from shop import broker_nodes
from shop.tcp_proxy import TcpProxy

Figures = dict[str, Any]


class CannotRun(RuntimeError):
    """The lab could not run here (no broker, no rabbitmq-server...); one line says why."""


@dataclass(frozen=True)
class Variant:
    label: str  # a few words: "manual ack"
    does: str  # a sentence: what this variant does differently


@dataclass(eq=False)  # each lab is one object; compared and hashed by identity
class Lab:
    name: str
    title: str
    question: str
    sound: Variant
    broken: Variant
    guarantee: str  # what holds in the sound variant, in words
    holds: Callable[[Figures], bool]  # the same, as a check of the figures
    outcome: str  # a format string over the figures
    read: str  # where to read the mechanism in the code
    by_hand: str = ""  # markdown: the same lesson tried by hand on `make run`
    needs_broker_node: bool = False  # it restarts a broker: a throwaway node, not a vhost
    explanation: str = ""  # the module's docstring, filled in by `measure`
    measure_figures: Callable[[Run], Figures] | None = field(default=None, repr=False)

    def measure(self, function: Callable[[Run], Figures]) -> Callable[[Run], Figures]:
        """Decorator: the function that runs the variant and returns its figures."""
        self.measure_figures = function
        self.explanation = (sys.modules[function.__module__].__doc__ or "").strip()
        return function

    def summary(self, figures: Figures, broken: bool) -> str:
        label = (self.broken if broken else self.sound).label
        return f"{label}: {self.outcome.format(**figures)}"


@dataclass
class Run:
    """One run of one variant: where the broker is, a scratch directory, what was done."""

    broken: bool
    amqp_url: str  # a fresh vhost (or the throwaway node's default vhost)
    workdir: Path  # for the lab's databases and files; deleted afterwards
    node: broker_nodes.BrokerNode | None = None  # only for labs that restart a broker
    did: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return "broken" if self.broken else "sound"

    def say(self, what: str) -> None:
        """Note a step, for the "what it did" lines of the report."""
        self.did.append(what)

    def restart_broker(self) -> None:
        """Stop the throwaway node's RabbitMQ application and start it again."""
        assert self.node is not None, "set needs_broker_node=True on the lab"
        broker_nodes.stop_app(self.node)
        broker_nodes.start_app(self.node)


def connect(amqp_url: str, name: str = "lab") -> pika.BlockingConnection:
    """A plain pika connection, named so that it shows in the management UI."""
    parameters = pika.URLParameters(amqp_url)
    parameters.client_properties = {"connection_name": name}
    return pika.BlockingConnection(parameters)


def wait_for(condition: Callable[[], object], timeout: float, pause: float = 0.02) -> bool:
    """Poll `condition` until it is true (True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
    return True


def message_count(amqp_url: str, queue: str) -> int | None:
    """Messages ready in `queue`; None when there is no such queue."""
    connection = connect(amqp_url, "lab: count")
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code == 404:
            return None
        raise
    finally:
        if connection.is_open:
            connection.close()


def take_all(amqp_url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take (and ack) every message ready in `queue` now."""
    connection = connect(amqp_url, "lab: take")
    try:
        channel = connection.channel()
        taken = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((properties, body))
    finally:
        connection.close()


class Worker:
    """A consumer on its own thread and connection, as if it were a process of its own.

    It consumes `queue` (a name, or a function that declares a queue on the worker's
    channel and returns its name), calls `work(body)` for each message (by default it
    sleeps `seconds_per_message`: the work), records it, and acks it after the work,
    unless `auto_ack`. `prefetch` 0 sets no limit: the broker sends all it can at once.
    """

    def __init__(
        self,
        amqp_url: str,
        queue: str | Callable[[Any], str],
        *,
        name: str = "worker",
        prefetch: int = 0,
        auto_ack: bool = False,
        seconds_per_message: float = 0.0,
        work: Callable[[bytes], None] | None = None,
        handle: Callable[..., None] | None = None,
    ) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.name = name
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.work = work or (lambda _body: time.sleep(seconds_per_message))
        self.handle = handle
        self.handled: list[tuple[float, bytes]] = []  # (time.monotonic(), body), in order
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, timeout: float = 15.0) -> Worker:
        """Start consuming; return once the broker has registered the consumer."""
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start consuming: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @property
    def count(self) -> int:
        return len(self.handled)

    def bodies(self) -> list[bytes]:
        return [body for _, body in self.handled]

    def _run(self) -> None:
        try:
            connection = connect(self.amqp_url, self.name)
            channel = connection.channel()
            queue = self.queue(channel) if callable(self.queue) else self.queue
            if self.prefetch:
                channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(queue, self._on_message, auto_ack=self.auto_ack)
            self._ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.05)
            connection.close()
        except BaseException as error:  # reported by start(), or visible as .error
            self.error = error
            self._ready.set()

    def _on_message(self, channel, method, properties, body: bytes) -> None:  # type: ignore[no-untyped-def]
        if self.handle is not None:
            self.handle(channel, method, properties, body)
            self.handled.append((time.monotonic(), body))
            return
        self.work(body)
        self.handled.append((time.monotonic(), body))
        if not self.auto_ack:
            channel.basic_ack(method.delivery_tag)


def settle(amqp_url: str, queues: list[str], workers: list[Worker], quiet: float = 0.5) -> bool:
    """Wait (10 s at most) until every queue is empty and no worker has handled anything
    for `quiet` seconds: then nothing more is on its way. False at the deadline."""

    def last_handled() -> float:
        return max((worker.handled[-1][0] for worker in workers if worker.handled), default=0.0)

    def settled() -> bool:
        return (
            all(not message_count(amqp_url, queue) for queue in queues)
            and time.monotonic() - last_handled() >= quiet
        )

    return wait_for(settled, 10.0, pause=0.05)


@contextlib.contextmanager
def cuttable(amqp_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of the broker (shop/tcp_proxy.py) and the AMQP URL through it:
    cutting it is what a lost broker looks like to a client, while the broker runs on."""
    parts = urlsplit(amqp_url)
    proxy = TcpProxy(parts.hostname or "localhost", parts.port or 5672)
    credentials = parts.netloc.rpartition("@")[0]
    try:
        yield proxy, urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))
    finally:
        proxy.close()
