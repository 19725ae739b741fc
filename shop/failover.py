"""A failover drill: the shop on a RabbitMQ cluster of this machine, orders streaming in at a
steady pace, and what losing a node costs.

`stage()` starts the nodes (`shop cluster`, shop/cluster.py), a PostgreSQL database (the
one TEST_POSTGRES_URL names, else a throwaway instance) and the real `shop up` with
replicas on them (shop/running_shop.py), and stops and deletes all of it afterwards.
`OrderStream` posts orders over HTTP at a steady pace from a thread of the load generator
(loadtest/crowd.py). `decisions()` reads
back when each order was decided (its `updated_at`), and `after_loss()` says what one
loss cost: the longest pause in decisions around it, and how long after the node went
away newly posted orders were decided as fast as before.

tests/integration/test_failover.py proves with it that a lost node loses and doubles
nothing; bench/cluster.py measures with it one node against three.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from loadtest.client import HTTP_ERRORS, Http
from loadtest.crowd import Crowd
from messaging.connection import channel_for
from messaging.management import ManagementApi
from shop import broker_nodes, broker_users, cluster, postgres_instances
from shop.broker_nodes import BrokerNode
from shop.catalog import CATALOG
from shop.local_servers import wait_until
from shop.running_shop import RunningShop, running_shop

HTTP_TIMEOUT = 10.0


@dataclass
class Stage:
    nodes: tuple[BrokerNode, ...]
    shop: RunningShop
    admin: dict[str, str]  # the Authorization header of the admin endpoints
    database_url: str

    @property
    def amqp_url(self) -> str:
        return ",".join(node.amqp_url for node in self.nodes)


def postgres_database(cleanup: ExitStack) -> str:
    """A new, empty PostgreSQL database, dropped (or its instance stopped) at cleanup:
    on the server TEST_POSTGRES_URL names, else on a throwaway local instance."""
    server = os.environ.get("TEST_POSTGRES_URL")
    if server:
        url = postgres_instances.create_scratch_database(server)
        cleanup.callback(postgres_instances.drop_scratch_database, server, url)
        return url
    instance = postgres_instances.start_instance("failover")
    cleanup.callback(postgres_instances.stop_instance, instance)
    return postgres_instances.create_database(instance, "shop")


@contextmanager
def stage(
    workdir: Path,
    *up_args: str,
    nodes: int = 3,
    leaders_on_last: bool = False,
    own_users: bool = True,
    first_port: int = 7701,
    **environment: str,
) -> Iterator[Stage]:
    """`shop up UP_ARGS...` on `nodes` new RabbitMQ nodes and a new PostgreSQL database,
    every process on its own broker user (least privilege: shop/broker_users.py, with
    passwords made up here) unless `own_users` is false.

    With `leaders_on_last`, the topology is declared through the last node first, so
    the quorum queues' leaders start there while every client starts on the first node
    (AMQP_URL's order): losing the last node is then a loss of leaders only."""
    with ExitStack() as cleanup:
        database = postgres_database(cleanup)
        state_file = workdir / cluster.STATE_FILE
        cleanup.callback(cluster.down, state_file, io.StringIO())
        base_port = cluster.free_base_port(nodes, first_port)
        up = cluster.up(nodes, base_port, state_file, io.StringIO())
        token = secrets.token_urlsafe(24)
        env = {
            **{service.settings.DATABASE_VARIABLE: database for service in CATALOG},
            "SHOP_ADMIN_TOKEN": token,
            "RABBITMQ_MANAGEMENT_URL": up.nodes[0].management_url or "",
            **environment,
        }
        settings = CATALOG.settings_from_env({**os.environ, **env})
        if leaders_on_last:
            with channel_for(up.nodes[-1].amqp_url, "failover: leaders") as channel:
                CATALOG.topology(settings).declare(channel)
        if own_users:
            users = broker_users.broker_users(settings)
            passwords = {user.password_variable: secrets.token_hex(16) for user in users}
            broker_users.create_users(users, up.amqp_url, passwords, up.nodes[0].management_url)
            env.update(broker_users.url_variables(users, up.amqp_url, passwords))
        shop = cleanup.enter_context(running_shop(workdir, up.amqp_url, *up_args, **env))
        yield Stage(up.nodes, shop, {"Authorization": f"Bearer {token}"}, database)


@dataclass(frozen=True)
class Posted:
    id: str | None  # None: not accepted (see status)
    status: int  # the HTTP status, 0 when no answer came
    at: float  # time.time() when it was sent


@dataclass
class OrderStream:
    """Orders of one unit of a sku (round robin over `skus`), `per_second` of them, from one
    thread of the load generator (loadtest/crowd.py) with its keep-alive connection, until
    `stop()`; then `posted` holds every one."""

    base: str
    skus: Sequence[str]
    per_second: float
    posted: list[Posted] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _crowd: Crowd | None = None
    _running: Future[list[Posted]] | None = None

    def start(self) -> OrderStream:
        numbers = itertools.count()
        self._crowd = Crowd(self.base, 1)
        self._running = self._crowd.keep_going(
            lambda client: post_order(client, self.skus[next(numbers) % len(self.skus)]),
            until=math.inf,
            pause=1 / self.per_second,
            stop=self._stop,
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._running is not None and self._crowd is not None:
            self.posted = self._running.result(timeout=HTTP_TIMEOUT * 2)
            self._crowd.close()

    @property
    def accepted(self) -> list[Posted]:
        return [posted for posted in self.posted if posted.id is not None]


def post_order(client: Http, sku: str) -> Posted:
    """One order of one unit of `sku`, on the load generator's client."""
    sent = time.time()
    body = {
        "customer": {"name": "Stream Customer", "phone": "+4930123456"},
        "items": [{"sku": sku, "quantity": 1}],
    }
    try:
        answer = client.request("POST", "/api/orders", body)
    except HTTP_ERRORS:
        return Posted(None, 0, sent)
    order_id = answer.body["id"] if answer.status == 201 else None
    return Posted(order_id, answer.status, sent)


def order(base: str, order_id: str) -> dict:
    return requests.get(f"{base}/api/orders/{order_id}", timeout=HTTP_TIMEOUT).json()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class Decided:
    posted_at: float
    decided_at: float  # the order's updated_at: when the saga recorded the decision

    @property
    def latency(self) -> float:
        return self.decided_at - self.posted_at


def decisions(orders: Sequence[dict]) -> list[Decided]:
    """When each decided order was posted and decided, in the order they were decided."""
    found = [
        Decided(epoch(o["created_at"]), epoch(o["updated_at"]))
        for o in orders
        if o["status"] != "PENDING"
    ]
    return sorted(found, key=lambda d: d.decided_at)


@dataclass(frozen=True)
class LossCost:
    pause: float  # the longest time without a decision, from the stop on (of orders
    # posted from just before it until `until`, however late they were decided)
    caught_up: float  # s after the node was gone from which new orders went as fast as before
    worst_latency: float  # the slowest order posted around the loss, POST to decision
    usual_latency: float  # the median before the loss


def after_loss(
    decided: Sequence[Decided], began: float, gone: float, until: float, settle: float = 1.0
) -> LossCost:
    """What a node stopped from `began` to `gone` (its shutdown takes seconds: somewhere in
    there its connections close and its queues elect new leaders) cost, judged on the
    orders posted up to `until` (the next loss, or the end of the stream). An order went
    "as fast as before" when it took no longer than `settle` s, or three times the usual
    latency if that is longer."""
    before = [d.latency for d in decided if d.posted_at < began]
    usual = statistics.median(before) if before else 0.0
    limit = max(settle, 3 * usual)
    window = [d for d in decided if began - 2 <= d.posted_at < until]
    times = sorted(d.decided_at for d in window if d.decided_at >= began)
    pause = max((b - a for a, b in zip([began, *times], times, strict=False)), default=0.0)
    slow = [d.posted_at for d in window if d.latency > limit]
    caught_up = max(0.0, max(slow) - gone) if slow else 0.0
    worst = max((d.latency for d in window), default=0.0)
    return LossCost(pause, caught_up, worst, usual)


def leader_of(node: BrokerNode, queue: str) -> str | None:
    """The node that leads `queue`, as `node` sees it."""
    found = broker_nodes.replicas(node).get(queue)
    return found.leader if found else None


@dataclass(frozen=True)
class Connection:
    node: str
    name: str  # each of the shop's connections is named for its worker
    user: str


def connections(node: BrokerNode) -> list[Connection]:
    """Every AMQP connection of the cluster, from the management API of `node`."""
    api = ManagementApi(node.management_url or "", "guest", "guest")
    found = api.get("/api/connections?columns=node,user,client_properties") or []
    return [
        Connection(
            c["node"], (c.get("client_properties") or {}).get("connection_name", ""), c["user"]
        )
        for c in found  # type: ignore[union-attr]
    ]


def clients_per_node(node: BrokerNode) -> Counter[str]:
    """{node name: AMQP connections on it}."""
    return Counter(connection.node for connection in connections(node))


def all_online(node: BrokerNode, members: int) -> bool:
    """Whether every quorum queue, asked through `node`, has `members` members online."""
    try:
        queues = broker_nodes.replicas(node)
    except broker_nodes.NodeFailed:
        return False
    return bool(queues) and all(len(q.online) == members for q in queues.values())


def move_leader(queue: str, away_from: BrokerNode, through: BrokerNode) -> None:
    """Make another member lead `queue`: its member on `away_from` is deleted (the leader
    steps down and the others elect one) and added again, and this waits until all are
    online (`through`: a running node to ask)."""
    for action in ("delete_member", "add_member"):
        broker_nodes.ctl(through, action, queue, away_from.name, tool="rabbitmq-queues")
    members = len(broker_nodes.replicas(through)[queue].members)
    wait_until(
        lambda: len(getattr(broker_nodes.replicas(through).get(queue), "online", ())) == members,
        60,
        f"{queue} online on {members} nodes again",
    )
