"""The one reconnect loop: every long-lived broker connection of the shop runs in one.

The outbox relay, every consumer and RPC server, the web processes' background publisher
and broadcast listener are `ReconnectingWorker`s. Each says only what it does while it is
connected (`work`); the loop around it is the same for all:

    connect (each URL of AMQP_URL in turn, backing off while none answers)
      -> open a channel -> declare its part of the topology -> work(connection, channel, stop)
      -> the broker goes away: one log line, `lost()`, back off with jitter, connect again
    until `stop` is set.

pika's BlockingConnection is not thread-safe, so a worker's connection belongs to the
thread that runs it; `run(stop)` is what that thread calls.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar

import pika
from pika.adapters.blocking_connection import BlockingChannel

from messaging.connection import CONNECTION_ERRORS, Backoff, close_quietly, connect_with_retry
from messaging.topology import Topology

log = logging.getLogger(__name__)

ACCESS_REFUSED = 403  # the AMQP reply code of an operation the user's permissions forbid


class ReconnectingWorker:
    # What ends a connection's life without ending the worker: these are logged and the
    # worker reconnects. Anything else is a bug and ends the worker (and its process).
    recoverable: ClassVar[tuple[type[BaseException], ...]] = CONNECTION_ERRORS
    # Said after a loss in the log line: what the loss means for this worker's messages.
    after_loss: ClassVar[str] = ""

    def __init__(self, *, name: str, amqp_url: str, topology: Topology | None) -> None:
        self.name = name
        self.amqp_url = amqp_url
        self.topology = topology  # None: the worker declares what it needs itself

    def work(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, stop: threading.Event
    ) -> None:
        """Do the worker's job on this connection until `stop` is set (or it fails)."""
        raise NotImplementedError

    def lost(self, error: BaseException) -> None:
        """The connection is gone (or `work` failed): tidy up before reconnecting."""

    def describe(self, error: BaseException) -> str:
        """What went wrong, for the log line."""
        if getattr(error, "reply_code", None) == ACCESS_REFUSED:
            # Least privilege (shop/broker_users.py): its user may touch only its own part.
            return (
                f"was refused by the broker ({error}): its user's permissions do not cover "
                "this (`shop topology --users` grants them), or the admin has not declared "
                "the topology yet (`shop topology`, `shop up`)"
            )
        return f"lost the broker ({type(error).__name__}: {error})"

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set, reconnecting whenever the broker goes away."""
        backoff = Backoff()
        while not stop.is_set():
            connection = connect_with_retry(self.amqp_url, self.name, stop)
            if connection is None:
                break
            try:
                channel = connection.channel()
                if self.topology is not None:
                    self.topology.declare(channel)
                backoff.reset()
                self.work(connection, channel, stop)
            except self.recoverable as error:
                self.lost(error)
                delay = backoff.next_delay()
                after = f"; {self.after_loss}" if self.after_loss else ""
                log.warning(
                    "%s %s%s; reconnecting in %.1f s", self.name, self.describe(error), after, delay
                )
                stop.wait(delay)
            finally:
                close_quietly(connection)
        log.info("%s stopped", self.name)

    def start_in_background(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread (a web process's helpers: they die with the process)."""
        thread = threading.Thread(target=self.run, args=(stop,), name=self.name, daemon=True)
        thread.start()
        return thread
