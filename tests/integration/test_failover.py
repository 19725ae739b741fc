"""Losing RabbitMQ nodes under load, on real nodes of this machine: the real `shop up` with two
processes of each service and two web workers, on a three-node cluster and PostgreSQL
(shop/failover.py stages it; the topology is declared through node 3, so the queues'
leaders start there while every client starts on node 1).

Orders stream in at a steady pace while the node that leads `inventory.orders` stops (and
comes back, every queue online on three nodes again), then the node most clients are
connected to: every order is decided once, every timeline is whole, nothing is doubled in
effect, and what each loss cost (the longest pause in decisions, and when new orders were
decided as fast as before) is printed. Then a flash-sale burst fills its bounded queue
while the queue's leader stops: nothing oversold, the overshoot past the limit bounded.

Starting the nodes and the shop takes most of the time, so all of it is one test on one
cluster: `make test` hands tests out with `--dist worksteal`, which would start a cluster
on each worker that got one of several tests.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from messaging.connection import close_quietly, open_connection
from messaging.pipeline import amqp_stats
from order_service.service import FLASH_SALE_WORKER
from shop import broker_nodes, failover
from shop.broker_nodes import BrokerNode
from shop.catalog import CATALOG
from shop.local_servers import Missing
from tests.support.amqp import wait_until
from tests.support.flash_sales import customer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALE = "order=2,inventory=2,coupon=2,notification=2"
SKUS = ("FAIL-A", "FAIL-B", "FAIL-C")
STOCK = 10_000
PACE = 8.0  # orders a second
DOWN_SECONDS = 4.0  # how long the stream runs with a node away
QUEUE_LIMIT = 30  # FLASH_SALE_QUEUE_LIMIT
QUOTA = 20
IN_FLIGHT = 2 * 8  # shop up's two web workers of 8 threads: purchases in flight at once
CONFIRMED_STORY = Counter(
    {
        "order.created": 1,
        "inventory.reserved": 1,
        "order.confirmed": 1,
        "coupon.issued": 1,  # a reward for every confirmed order
        "notification.sms_sent": 2,  # the confirmation, and the reward
    }
)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    try:
        broker_nodes.find_bin_directory()
        with failover.stage(
            tmp_path_factory.mktemp("failover"),
            "--scale",
            SCALE,
            leaders_on_last=True,
            FLASH_SALE_QUEUE_LIMIT=str(QUEUE_LIMIT),
        ) as staged:
            yield staged
    except Missing as missing:
        pytest.skip(str(missing))


def pipeline_state(amqp_url: str) -> dict[str, tuple[int, int]]:
    """{queue: (ready, consumers)} of every work and dead-letter queue, by passive declares."""
    connection = open_connection(amqp_url, "tests: failover state")
    try:
        channel = connection.channel()
        names = [n for q in CATALOG.topology().queues for n in (q.name, q.dead_letter_queue)]
        return {
            name: (found.message_count, found.consumer_count)
            for name in names
            for found in [channel.queue_declare(name, passive=True).method]
        }
    finally:
        close_quietly(connection)


def settled(stage, consumers: int = 2) -> bool:
    """Every outbox sent, every queue empty, each work queue with `consumers` consumers."""
    outbox = requests.get(stage.shop.base + "/api/pipeline", timeout=10).json()["outbox"]
    if any(backlog != 0 for backlog in outbox.values()):
        return False
    state = pipeline_state(stage.amqp_url)
    work = {q.name for q in CATALOG.topology().queues}
    return all(
        ready == 0 and (name not in work or used == consumers)
        for name, (ready, used) in state.items()
    )


def node_named(stage, name: str) -> BrokerNode:
    return next(node for node in stage.nodes if node.name == name)


def running(stage, *but: BrokerNode) -> BrokerNode:
    return next(node for node in stage.nodes if node not in but)


def lose_a_while(stage, node: BrokerNode, seconds: float) -> tuple[float, float]:
    """Stop the node's RabbitMQ (its connections close, its queue members stop), let the
    stream run `seconds` without it, start it again and wait until every queue is online
    on every node again: (when the stop began, when the node was gone)."""
    began = time.time()
    broker_nodes.stop_app(node)
    gone = time.time()
    time.sleep(seconds)
    broker_nodes.start_app(node)
    other = running(stage, node)
    wait_until(lambda: failover.all_online(other, 3), 90, "every queue online on three nodes")
    return began, gone


def complete(base: str, ids: list[str]) -> list[dict] | None:
    orders = [failover.order(base, order_id) for order_id in ids]
    done = all(Counter(e["event"] for e in o["timeline"]) >= CONFIRMED_STORY for o in orders)
    return orders if done else None


def test_nodes_lost_under_load_lose_and_double_nothing(stage, figures):
    base, admin = stage.shop.base, stage.admin
    for sku in (*SKUS, "FAIL-F"):
        product = {"sku": sku, "name": sku, "price_cents": 100, "stock": STOCK}
        assert requests.post(f"{base}/api/products", json=product, headers=admin).status_code == 201
    wait_until(lambda: settled(stage), 120, "two processes on every queue, products known")
    first, _, last = stage.nodes
    assert failover.leader_of(first, "inventory.orders") == last.name
    own = {f"shop-{name}" for name in CATALOG.names}  # each process on its own user
    wait_until(  # (the management API lists a new connection a moment later)
        lambda: {c.user for c in failover.connections(first) if c.name[:6] != "tests:"} == own,
        30,
        "every connection made by its service's own user",
    )

    # --- a steady stream; the leader of inventory.orders goes, then the clients' node ---
    stream = failover.OrderStream(base, SKUS, PACE).start()
    time.sleep(3)  # the stream's baseline
    leader = node_named(stage, failover.leader_of(first, "inventory.orders"))
    held = [
        f"{failover.clients_per_node(first).get(leader.name, 0)} clients, leads inventory.orders"
    ]
    lost = [lose_a_while(stage, leader, DOWN_SECONDS)]
    time.sleep(2)  # the stream as usual again, before the next loss
    asked = running(stage)
    clients = failover.clients_per_node(asked)
    busiest = node_named(stage, max(clients, key=clients.get))
    leads = [q for q, r in broker_nodes.replicas(asked).items() if r.leader == busiest.name]
    held.append(
        f"{clients[busiest.name]} of {sum(clients.values())} clients, leads {len(leads)} queues"
    )
    lost.append(lose_a_while(stage, busiest, DOWN_SECONDS))
    time.sleep(2)
    stream.stop()

    answers = Counter(posted.status for posted in stream.posted)
    assert answers == {201: len(stream.posted)}, answers  # no broker in an order's way
    ids = [posted.id for posted in stream.accepted]
    orders = wait_until(lambda: complete(base, ids), 120, f"{len(ids)} orders' whole stories")
    for placed in orders:  # decided once, each event once: nothing doubled in effect
        assert placed["status"] == "CONFIRMED", placed
        story = Counter(entry["event"] for entry in placed["timeline"])
        assert story == CONFIRMED_STORY, (placed["id"], story)
    wait_until(lambda: settled(stage), 60, "every outbox sent and every queue drained")
    for sku in SKUS:  # each confirmed order took its unit once
        sold = sum(1 for o in orders if o["items"][0]["sku"] == sku)
        available = requests.get(f"{base}/api/products/{sku}", timeout=10).json()["available"]
        assert available == STOCK - sold, sku

    decided = failover.decisions(orders)
    ends = [lost[1][0], stream.posted[-1].at]
    figures(f"{len(orders)} orders at {PACE:g}/s, every one confirmed once, its story whole")
    for number, ((began, gone), until, what) in enumerate(zip(lost, ends, held, strict=True)):
        cost = failover.after_loss(decided, began, gone, until)
        figures(
            f"loss {number + 1} ({what}): stop_app took {gone - began:.1f} s; the longest "
            f"pause in decisions {cost.pause:.1f} s; new orders as fast as before "
            f"{cost.caught_up:.1f} s after the node was gone; the slowest order took "
            f"{cost.worst_latency:.1f} s (usually {cost.usual_latency:.2f} s)"
        )

    flash_sale_limit_holds_across_a_failover(stage, figures)


def order_process_ids(log: str) -> list[int]:
    """The pids of the order service's processes (the last start of each replica)."""
    started = dict(re.findall(r"started (order(?:-\d+)?) \(pid (\d+)\)", log))
    return [int(pid) for pid in started.values()]


def flash_sale_limit_holds_across_a_failover(stage, figures) -> None:
    base, admin, queue = stage.shop.base, stage.admin, "flash-sale.requests"
    body = {"sku": "FAIL-F", "price_cents": 100, "quota": QUOTA}
    sale = requests.post(f"{base}/api/flash-sales", json=body, headers=admin).json()
    buy = f"{base}/api/flash-sales/{sale['id']}/purchases"
    tickets: list[str] = []

    def purchase(number: int) -> int:
        answer = requests.post(buy, json=customer(number), timeout=30)
        if answer.status_code == 202:
            tickets.append(answer.json()["ticket_id"])
        return answer.status_code

    # A few buyers first (409 while a web process has not seen the sale open yet): the
    # gates connect on their first purchase, and the ticket workers decide them.
    for number in range(9):
        wait_until(lambda n=number: purchase(n) == 202, 60, f"buyer {number} admitted")
    wait_until(lambda: decided(base, sale["id"], tickets), 60, "the first tickets decided")
    asked = running(stage)
    connected = wait_until(  # the two ticket workers and a gate, where they are connected
        lambda: (
            (found := failover.connections(asked))
            and sum(c.name == FLASH_SALE_WORKER for c in found) == 2
            and any(c.name == "flash-sale publisher" for c in found)
            and found
        ),
        30,
        "the ticket workers' and the gates' connections listed",
    )
    workers = {c.node for c in connected if c.name == FLASH_SALE_WORKER}
    for _attempt in range(3):  # lose the queue's leader, not the workers' node
        if failover.leader_of(asked, queue) not in workers:
            break
        leading = node_named(stage, failover.leader_of(asked, queue))
        failover.move_leader(queue, away_from=leading, through=running(stage, leading))
    assert failover.leader_of(asked, queue) not in workers
    leader = node_named(stage, failover.leader_of(asked, queue))
    gates = [c.node for c in connected if c.name == "flash-sale publisher"]

    # The ticket workers stop taking (each holds its prefetch), so the queue fills up, and
    # the queue's leader goes while purchases keep coming.
    paused = order_process_ids(stage.shop.log_text())
    answers: list[int] = []
    stop = threading.Event()
    numbers = iter(range(100, 10**6))

    def customer_loop() -> None:
        while not stop.is_set():
            answers.append(purchase(next(numbers)))

    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            for _ in range(IN_FLIGHT):
                pool.submit(customer_loop)
            wait_until(lambda: 429 in answers, 30, "the queue full")
            broker_nodes.stop_app(leader)
            after = len(answers)
            wait_until(lambda: len(answers) >= after + 100, 30, "requests with the node gone")
            stop.set()
        other = running(stage, leader)
        wait_until(
            lambda: failover.leader_of(other, queue) not in (None, leader.name), 60, "a leader"
        )
        # A passive declare counts what the leader holds now (rabbitmqctl's figures lag).
        ready = amqp_stats(other.amqp_url, [queue])[queue]["ready"]
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    broker_nodes.start_app(leader)
    statuses = Counter(answers)
    overshoot = ready - QUEUE_LIMIT
    figures(
        f"flash sale across the loss of {queue}'s leader ({sum(g == leader.name for g in gates)}"
        f" of {len(gates)} gates connected to it): {dict(statuses)} answers; the queue held "
        f"{ready} ready (limit {QUEUE_LIMIT}: {overshoot:+d}) beside the paused workers' prefetch"
    )
    assert 0 <= overshoot <= IN_FLIGHT  # full, and past it by at most the requests in flight
    assert set(statuses) <= {202, 429, 503}, statuses

    # Every ticket admitted is decided (none lost in the failover), and not one unit more
    # than the quota is sold (a CHECK says so too).
    wait_until(lambda: decided(base, sale["id"], tickets), 120, f"{len(tickets)} tickets")
    final = requests.get(f"{base}/api/flash-sales/{sale['id']}", timeout=10).json()
    assert final["sold"] == QUOTA
    wait_until(lambda: failover.all_online(leader, 3), 90, "every queue online on three nodes")


def decided(base: str, sale_id: str, tickets: list[str]) -> bool:
    def status(ticket: str) -> str:
        url = f"{base}/api/flash-sales/{sale_id}/tickets/{ticket}"
        return requests.get(url, timeout=10).json()["status"]

    return all(status(ticket) != "QUEUED" for ticket in tickets)
