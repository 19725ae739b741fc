"""A service as the shop sees it (`Service`), and how its process runs (`run_service`).

Each service package declares itself once, in its `service.py`: its name, its settings,
its tables, the queues it owns and what it reads from each, the events it publishes, and
the workers of its process. The composition root (shop/catalog.py) lists the services;
the topology, `shop up`, the migrations, the dashboard, the contract documents and the
tests' settings are all built from that list. messaging/ only gives the shape:

    SERVICE = Service(
        name="inventory",
        package="inventory_service",
        settings=InventorySettings,
        metadata=Base.metadata,
        outbox=InventoryOutbox,
        inbox=InventoryInbox,
        queues=lambda settings: (WorkQueue("inventory.orders", bindings=...),),
        reads={"inventory.orders": handlers.ROUTES.models},
        publishes=events.PUBLISHED,
        workers=workers,
    )

What it says it publishes and reads is also what its broker user may do, and no more
(shop/broker_users.py derives the permissions): its events go to `shop.events`, the
queues in `sends_to` are written through the default exchange (RPC questions, the
flash-sale requests), the queues in `answers` are RPC queues whose replies go back through
the default exchange, and `listens_for` are the routing keys its (web) processes hear on
server-named exclusive queues.

A service's process runs its workers (relay, consumers, RPC server, ...) as threads. Each
worker has its own broker connection (pika connections are not thread-safe). If one worker
dies of an unexpected error, the others are stopped too and the process exits with an
error, so `shop up` (or the container runtime) restarts the whole service cleanly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Engine, MetaData
from sqlalchemy.orm import Session

from messaging.consumer import ConsumerRunner
from messaging.database import make_engine
from messaging.events import Event
from messaging.inbox import InboxColumns
from messaging.outbox import OutboxColumns
from messaging.relay import OutboxRelay
from messaging.routes import Handler
from messaging.rpc import RpcHandler, RpcServer
from messaging.settings import ServiceSettings
from messaging.topology import Topology, WorkQueue

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    def run(self, stop: threading.Event) -> None: ...


@dataclass(frozen=True)
class Metric:
    """One Prometheus metric family: a name, its kind, and its samples."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str
    samples: list[tuple[dict[str, str], float]]


@dataclass(frozen=True)
class Probe:
    """Numbers of the service's own that the dashboard and /metrics show (say, the SMS
    backlog): `read` counts them with a read-only session on the service's database (their
    JSON in GET /api/pipeline, under `name`), `metrics` turns them into metric families."""

    name: str
    read: Callable[[Session], dict[str, Any]]
    metrics: Callable[[dict[str, Any]], list[Metric]]


@dataclass(frozen=True)
class Service:
    name: str  # "inventory": `shop run inventory`, `shop up --scale inventory=2`
    package: str  # "inventory_service": its logs' name, its events' app_id, its version table
    settings: type[ServiceSettings]
    metadata: MetaData  # its tables, made by its migrations
    outbox: type[OutboxColumns]
    inbox: type[InboxColumns]
    queues: Callable[[Any], tuple[WorkQueue, ...]]  # the queues it owns, given its settings
    workers: Callable[[ServiceContext], list[Worker]]
    # {queue: {message type: the model its body must match}}: what it reads from each.
    reads: Mapping[str, Mapping[str, type[BaseModel]]] = field(default_factory=dict)
    publishes: tuple[type[Event], ...] = ()  # the events it announces through its outbox
    broadcasts: frozenset[str] = frozenset()  # events only web processes need to hear
    sends_to: tuple[str, ...] = ()  # queues it publishes into through the default exchange
    answers: tuple[str, ...] = ()  # its RPC queues: replies go through the default exchange
    listens_for: tuple[str, ...] = ()  # keys of shop.events heard on server-named queues
    probes: tuple[Probe, ...] = ()
    migrations: Path | None = None  # its Alembic environment (env.py, versions/)

    def owned_queues(self, settings: ServiceSettings | None = None) -> tuple[WorkQueue, ...]:
        """Its queues, each marked as its own."""
        chosen = settings if settings is not None else self.settings()
        return tuple(
            WorkQueue(q.name, q.bindings, q.max_length, owner=self.name)
            for q in self.queues(chosen)
        )


@dataclass(frozen=True)
class ServiceContext:
    """What a service's workers are built from: its entry, settings, engine and the
    shop's topology. Each worker declares its service's part of it when it connects
    (`own_topology`: its own queues, never another service's, which its broker user may
    not touch)."""

    service: Service
    settings: Any  # the service's own settings class (a ServiceSettings)
    engine: Engine
    topology: Topology

    @property
    def own_topology(self) -> Topology:
        return self.topology.owned_by(self.service.name)

    def relay(self, **options: Any) -> OutboxRelay:
        options.setdefault("name", f"{self.service.name} relay")
        return OutboxRelay(
            engine=self.engine,
            model=self.service.outbox,
            amqp_url=self.settings.amqp_url,
            topology=self.own_topology,
            outbox_retention_days=self.settings.outbox_retention_days,
            **options,
        )

    def consumer(self, queue: str, handler: Handler, **options: Any) -> ConsumerRunner:
        options.setdefault("name", f"{self.service.name} consumer {queue}")
        return ConsumerRunner(
            queue=self.own_queue(queue),
            handler=handler,
            engine=self.engine,
            inbox_model=self.service.inbox,
            inbox_retention_days=self.settings.inbox_retention_days,
            amqp_url=self.settings.amqp_url,
            topology=self.own_topology,
            **options,
        )

    def rpc_server(self, queue: str, handlers: Mapping[str, RpcHandler]) -> RpcServer:
        if queue not in self.service.answers:  # its broker user could not reply
            raise ValueError(f"{self.service.name} serves {queue}: its entry must say answers=")
        return RpcServer(
            queue=self.own_queue(queue),
            handlers=handlers,
            engine=self.engine,
            amqp_url=self.settings.amqp_url,
            topology=self.own_topology,
            name=f"{self.service.name} rpc server",
        )

    def own_queue(self, name: str) -> str:
        """`name`, checked: a worker may consume only a queue its service declared."""
        owner = self.topology.queue(name).owner
        if owner != self.service.name:
            raise ValueError(f"{self.service.name} does not own {name} ({owner} does)")
        return name


class WorkerCrashed(RuntimeError):
    """A worker thread ended with an exception."""


def run_service(
    service: Service, settings: ServiceSettings, topology: Topology, stop: threading.Event
) -> None:
    """The service's process: every worker of it as a thread, until `stop`."""
    engine = make_engine(settings.database_url)
    try:
        run_together(service.workers(ServiceContext(service, settings, engine, topology)), stop)
    finally:
        engine.dispose()


def run_together(workers: Sequence[Worker], stop: threading.Event) -> None:
    crashed: list[str] = []

    def guarded(worker: Worker) -> None:
        try:
            worker.run(stop)
        except Exception:
            log.exception("%s crashed; stopping the service so that it is restarted", worker.name)
            crashed.append(worker.name)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(worker,), name=worker.name) for worker in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashed:
        raise WorkerCrashed(", ".join(crashed))
