"""`shop cluster` on real RabbitMQ nodes of this machine: three nodes cluster, a quorum
queue keeps every message when the node that took them stops, a client fails over to the
next node of AMQP_URL, the queue has three members again when the node is back, and
`down` leaves nothing behind.

Starting the nodes takes most of the time (20-40 s here), so the whole story is one test
on one cluster: `make test` hands tests out with `--dist worksteal`, which would start a
cluster on each worker that got one of several tests.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest

from messaging.connection import close_quietly, open_connection
from messaging.publisher import ConfirmingPublisher, Outgoing
from shop import broker_nodes, cluster
from shop.broker_nodes import BrokerNode, NodeFailed
from shop.local_servers import Missing
from tests.support.amqp import wait_until

pytestmark = pytest.mark.slow

MESSAGES = 2000
QUEUE = "cluster-test.orders"


@dataclass
class Started:
    workdir: Path  # `shop cluster` commands run here find var/cluster.json
    state_file: Path
    printed: dict[str, str]  # what `up` printed: {"AMQP_URL": ..., ...}
    cluster: cluster.Cluster


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> Started:
    try:
        broker_nodes.find_bin_directory()
    except Missing as missing:
        pytest.skip(str(missing))
    workdir = tmp_path_factory.mktemp("cluster")
    state_file = workdir / cluster.STATE_FILE
    out, err = io.StringIO(), io.StringIO()
    code = cluster.main(
        "up", nodes=3, base_port=cluster.free_base_port(3), state_file=state_file, out=out, err=err
    )
    assert code == 0, err.getvalue()
    printed = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    loaded = cluster.Cluster.load(state_file)
    assert loaded is not None
    yield Started(workdir, state_file, printed, loaded)
    cluster.main("down", state_file=state_file, out=io.StringIO(), err=io.StringIO())


def shop_cluster(workdir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`shop cluster ...` as its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "shop", "cluster", *arguments],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def replicas(node: BrokerNode, queue: str) -> broker_nodes.Replicas | None:
    """Where the queue lives, as `node` sees it; None while it does not answer."""
    try:
        return broker_nodes.replicas(node).get(queue)
    except NodeFailed:  # busy electing a leader, or still starting
        return None


def has_members(node: BrokerNode, queue: str, count: int, key: str = "members") -> bool:
    """True when the queue, asked through `node`, lists `count` nodes under `key`."""
    found = replicas(node, queue)
    return found is not None and len(getattr(found, key)) == count


def publish_confirmed(amqp_url: str, queue: str, count: int) -> None:
    connection = open_connection(amqp_url, "tests: cluster publish")
    try:
        publisher = ConfirmingPublisher(connection, connection.channel())
        batch = [
            Outgoing("", queue, str(number).encode(), pika.BasicProperties(delivery_mode=2))
            for number in range(count)
        ]
        outcomes = publisher.publish_batch(batch)
        assert all(outcome.confirmed for outcome in outcomes)
    finally:
        close_quietly(connection)


def take_bodies(amqp_url: str, queue: str, count: int) -> list[bytes]:
    """Consume (and ack) `count` messages; fewer when the queue has no more for 5 s."""
    connection = open_connection(amqp_url, "tests: cluster read")
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=500)
        bodies = []
        for method, _properties, body in channel.consume(queue, inactivity_timeout=5):
            if method is None:
                break
            bodies.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(bodies) == count:
                break
        channel.cancel()
        return bodies
    finally:
        close_quietly(connection)


def test_a_three_node_cluster_loses_a_node_and_no_message(started, caplog):
    a, b, c = started.cluster.nodes

    # `status` in another process finds the nodes `up` recorded: three running.
    status = shop_cluster(started.workdir, "status")
    assert status.returncode == 0, status.stderr
    assert [line.split() for line in status.stdout.splitlines()] == [
        [node.name, str(node.amqp_port), "running"] for node in (a, b, c)
    ]
    # The AMQP_URL line lists every node, and works; a second `up` refuses.
    assert started.printed["AMQP_URL"] == ",".join(node.amqp_url for node in (a, b, c))
    assert started.printed["RABBITMQ_MANAGEMENT_URL"] == a.management_url
    close_quietly(open_connection(started.printed["AMQP_URL"], "tests: cluster url"))
    again = shop_cluster(started.workdir, "up")
    assert again.returncode == 1 and "already up" in again.stderr
    other_state = started.workdir / "other" / "cluster.json"
    err = io.StringIO()
    assert cluster.main("up", base_port=a.amqp_port, state_file=other_state, err=err) == 1
    assert f"{a.amqp_port} (AMQP of node 1)" in err.getvalue()

    # A quorum queue declared through node A gets a member on every node.
    connection = open_connection(a.amqp_url, "tests: cluster declare")
    connection.channel().queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    close_quietly(connection)
    wait_until(lambda: has_members(b, QUEUE, 3), 30, f"{QUEUE} with three members")

    # 2,000 messages, confirmed through A, are all there through B after A stops.
    publish_confirmed(a.amqp_url, QUEUE, MESSAGES)
    broker_nodes.halt(a)
    try:
        # A client whose AMQP_URL lists the stopped node first connects to the next one.
        caplog.set_level(logging.WARNING, logger="messaging.connection")
        first_stopped = f"{a.amqp_url},{b.amqp_url}"
        close_quietly(open_connection(first_stopped, "tests: failover"))
        assert f"127.0.0.1:{b.amqp_port}/%2F (node 2 of 2)" in caplog.text
        wait_until(
            lambda: getattr(replicas(b, QUEUE), "leader", None) in (b.name, c.name),
            30,
            f"a leader of {QUEUE} on B or C",
        )
        bodies = take_bodies(first_stopped, QUEUE, MESSAGES)
        assert sorted(int(body) for body in bodies) == list(range(MESSAGES))
    finally:
        broker_nodes.boot(a)

    # Back with its data, A is a member again, online: three replicas, nothing to do.
    wait_until(lambda: has_members(b, QUEUE, 3, "online"), 60, f"{QUEUE} online on three")
    wait_until(lambda: has_members(a, QUEUE, 3), 30, f"{QUEUE} seen through A again")

    # A member lost for good (as when a node is replaced) comes back with `grow`.
    broker_nodes.ctl(c, "delete_member", QUEUE, c.name, tool="rabbitmq-queues")
    wait_until(lambda: has_members(a, QUEUE, 2), 30, f"{QUEUE} without a member on C")
    grown = shop_cluster(started.workdir, "grow")
    assert grown.returncode == 0, grown.stderr
    assert f"{c.name}: added a member to 1 quorum queues" in grown.stderr
    wait_until(lambda: has_members(a, QUEUE, 3, "online"), 30, f"{QUEUE} grown back to three")

    # `down` stops every node and deletes every folder and the record.
    down = shop_cluster(started.workdir, "down")
    assert down.returncode == 0, down.stderr
    assert not started.state_file.exists()
    assert not started.cluster.directory.exists()
    assert all(broker_nodes.status(node) == "stopped" for node in (a, b, c))
    assert not cluster.ports_in_use(a.amqp_port, 3)
    nothing = shop_cluster(started.workdir, "status")
    assert nothing.returncode == 1 and "no cluster is up" in nothing.stderr
