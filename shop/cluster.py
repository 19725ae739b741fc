"""`shop cluster up|status|down|grow`: a RabbitMQ cluster on this machine, from the
distribution's rabbitmq-server, for development, labs and tests.

Node i of `up --nodes N --base-port B` (i = 0..N-1) is `shop-<B+i>@localhost`, with AMQP
on B+i, the management API on B+10000+i and Erlang distribution on B+20000+i (RabbitMQ's
own pattern: 5672, 15672, 25672), its data and logs in its own folder under one scratch
folder (shop/broker_nodes.py starts and stops each). The first node is started, the others
join it (`rabbitmqctl stop_app; join_cluster FIRST; start_app`). What a later `status`,
`down` or `grow` needs (names, ports, folders) is kept in var/cluster.json.

Quorum queues on it: RabbitMQ 3.10 gives a new quorum queue min(3, nodes) members (its
`quorum_cluster_size` default), so on three nodes every queue has all three. A member
that stops and starts again stays a member and catches up by itself. A node that is
replaced (forgotten with `forget_cluster_node`, a fresh one joined) is no member of the
old queues: `shop cluster grow` adds a member on every running node that lacks one
(`rabbitmq-queues grow NODE all`), and does nothing where nothing is missing.

Progress goes to stderr, the result to stdout, so `export $(shop cluster up)` works.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from shop import broker_nodes
from shop.broker_nodes import BrokerNode, NodeFailed
from shop.local_servers import Missing, remove_tree, scratch_directory, service_user

STATE_FILE = Path("var/cluster.json")
MANAGEMENT_OFFSET = 10000
DIST_OFFSET = 20000
MAX_NODES = 9


class ClusterError(Exception):
    """`shop cluster` cannot do what was asked; the message says why, in one line."""


@dataclass(frozen=True)
class Cluster:
    directory: Path  # every node's folder is in here; deleted by `down`
    nodes: tuple[BrokerNode, ...]

    @property
    def amqp_url(self) -> str:
        """The value of AMQP_URL for this cluster: every node, in order."""
        return ",".join(node.amqp_url for node in self.nodes)

    def save(self, state_file: Path) -> None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {"directory": str(self.directory), "nodes": [n.as_json() for n in self.nodes]}
        state_file.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, state_file: Path) -> Cluster | None:
        """The cluster `up` recorded in `state_file`, or None when there is none."""
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        nodes = tuple(BrokerNode.from_json(fields) for fields in state["nodes"])
        return cls(Path(state["directory"]), nodes)


def planned_ports(base_port: int, count: int) -> list[tuple[int, str]]:
    """(port, what it is for) of every port `up` would take."""
    ports = []
    for i in range(count):
        ports += [
            (base_port + i, f"AMQP of node {i + 1}"),
            (base_port + MANAGEMENT_OFFSET + i, f"management API of node {i + 1}"),
            (base_port + DIST_OFFSET + i, f"Erlang distribution of node {i + 1}"),
        ]
    return ports


def ports_in_use(base_port: int, count: int) -> list[str]:
    """`PORT (what for)` of each planned port something already listens on."""
    return [
        f"{port} ({purpose})" for port, purpose in planned_ports(base_port, count) if in_use(port)
    ]


def free_base_port(count: int, first: int = 6701) -> int:
    """A base port whose every port `up` would take is free (below the ephemeral range),
    for a cluster of one's own beside others (the tests', the benches')."""
    for base in range(first, 9700, 10):
        if not ports_in_use(base, count):
            return base
    raise ClusterError(f"no free base port for {count} nodes between {first} and 9700")


def in_use(port: int) -> bool:
    with socket.socket() as probe:
        # As the broker binds: a port whose last connections are in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def check_request(count: int, base_port: int) -> None:
    if not 1 <= count <= MAX_NODES:
        raise ClusterError(f"--nodes must be between 1 and {MAX_NODES}, got {count}")
    highest = base_port + DIST_OFFSET + count - 1
    if base_port < 1024 or highest > 65535:
        raise ClusterError(
            f"--base-port must leave room for {count} nodes' ports (it, +{MANAGEMENT_OFFSET} "
            f"and +{DIST_OFFSET}, all between 1024 and 65535), got {base_port}"
        )
    taken = ports_in_use(base_port, count)
    if taken:
        raise ClusterError(f"in use: port {', '.join(taken)}; choose another --base-port")


def up(count: int, base_port: int, state_file: Path, progress: TextIO) -> Cluster:
    """Start `count` new nodes, cluster them, record them in `state_file`; on any failure
    stop and delete whatever was started (and the record) before raising."""
    broker_nodes.find_bin_directory()  # Missing before anything else
    existing = Cluster.load(state_file)
    if existing is not None:
        running = sum(broker_nodes.status(node) == "running" for node in existing.nodes)
        raise ClusterError(
            f"a cluster is already up ({state_file}: {len(existing.nodes)} nodes, {running} "
            "running): `shop cluster status` shows it, `shop cluster down` removes it"
        )
    check_request(count, base_port)
    started = time.monotonic()
    cluster = _prepare(count, base_port)
    cluster.save(state_file)  # first: even an `up` killed halfway leaves what `down` needs
    say = _printer(progress)
    try:
        say(f"starting {count} RabbitMQ nodes in {cluster.directory} (this takes a while)")
        with ThreadPoolExecutor(max_workers=count) as pool:
            booting = [pool.submit(_boot, node) for node in cluster.nodes]
            for future in as_completed(booting):
                node = future.result()
                say(f"{node.name} is up (AMQP {node.amqp_port}, management {node.management_port})")
        first = cluster.nodes[0]
        for node in cluster.nodes[1:]:
            broker_nodes.ctl(node, "stop_app")
            broker_nodes.ctl(node, "join_cluster", first.name)
            broker_nodes.start_app(node)
            say(f"{node.name} joined {first.name}")
    except BaseException:
        say("starting failed: stopping and deleting the nodes")
        _remove(cluster, state_file)
        raise
    say(f"{count} nodes running, clustered, in {time.monotonic() - started:.0f} s")
    return cluster


def _prepare(count: int, base_port: int) -> Cluster:
    user = service_user("rabbitmq")
    directory = scratch_directory(f"shop-cluster-{base_port}-", user)
    nodes = []
    for i in range(count):
        name = f"shop-{base_port + i}"
        folder = directory / name
        folder.mkdir()
        if user is not None:
            shutil.chown(folder, user)
        nodes.append(
            broker_nodes.prepare_node(
                f"{name}@localhost",
                amqp_port=base_port + i,
                dist_port=base_port + DIST_OFFSET + i,
                directory=folder,
                management_port=base_port + MANAGEMENT_OFFSET + i,
            )
        )
    return Cluster(directory, tuple(nodes))


def _boot(node: BrokerNode) -> BrokerNode:
    broker_nodes.boot(node)
    return node


def _remove(cluster: Cluster, state_file: Path) -> None:
    with ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
        list(pool.map(broker_nodes.halt, cluster.nodes))
    remove_tree(cluster.directory)
    state_file.unlink(missing_ok=True)


def down(state_file: Path, progress: TextIO) -> Cluster | None:
    """Stop every node of the recorded cluster and delete its folders and the record;
    None when there is none."""
    cluster = Cluster.load(state_file)
    if cluster is None:
        return None
    say = _printer(progress)
    say(f"stopping {len(cluster.nodes)} nodes")
    _remove(cluster, state_file)
    say(f"stopped {', '.join(node.name for node in cluster.nodes)}; deleted {cluster.directory}")
    return cluster


def status_lines(cluster: Cluster) -> list[str]:
    """`NODE  AMQP-PORT  running|stopped`, one per node."""
    width = max(len(node.name) for node in cluster.nodes)
    return [
        f"{node.name:<{width}}  {node.amqp_port}  {broker_nodes.status(node)}"
        for node in cluster.nodes
    ]


def grow(cluster: Cluster, progress: TextIO) -> int:
    """Give every quorum queue a member on every running node that lacks one; the number
    of members added."""
    say = _printer(progress)
    added = 0
    for node in cluster.nodes:
        if broker_nodes.status(node) != "running":
            say(f"{node.name} is stopped: skipped")
            continue
        output = broker_nodes.ctl(node, "grow", node.name, "all", tool="rabbitmq-queues")
        # A table: a header `vhost name size result`, then one row per queue grown.
        rows = [line.split("\t") for line in output.splitlines() if line.count("\t") == 3]
        grown = sum(row[3] == "ok" for row in rows[1:])
        failed = [f"{row[0]} {row[1]}: {row[3]}" for row in rows[1:] if row[3] != "ok"]
        say(f"{node.name}: added a member to {grown} quorum queues")
        for failure in failed:
            say(f"{node.name}: could not grow {failure}")
        added += grown
    return added


def _printer(stream: TextIO):  # type: ignore[no-untyped-def]
    def say(line: str) -> None:
        print(f"shop cluster: {line}", file=stream, flush=True)

    return say


def main(
    action: str,
    *,
    nodes: int = 3,
    base_port: int = 5701,
    state_file: Path = STATE_FILE,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The `shop cluster ACTION` command: 0 done, 1 refused or failed, 2 cannot run here."""
    try:
        if action == "up":
            cluster = up(nodes, base_port, state_file, err)
            print(f"AMQP_URL={cluster.amqp_url}", file=out)
            print(f"RABBITMQ_MANAGEMENT_URL={cluster.nodes[0].management_url}", file=out)
            return 0
        if action == "down":
            if down(state_file, err) is None:
                print(f"shop cluster: no cluster is up (no {state_file}): nothing to do", file=err)
            return 0
        cluster = Cluster.load(state_file)
        if cluster is None:
            print(f"shop cluster: no cluster is up (no {state_file}); `shop cluster up`", file=err)
            return 1
        if action == "status":
            print("\n".join(status_lines(cluster)), file=out)
            return 0
        if action == "grow":
            grow(cluster, err)
            return 0
        raise ValueError(f"unknown action {action!r}")
    except Missing as missing:
        print(f"shop cluster: {missing}", file=err)
        return 2
    except ClusterError as error:
        print(f"shop cluster: {error}", file=err)
        return 1
    except (NodeFailed, TimeoutError) as error:
        print(f"shop cluster: {error}", file=err)
        return 1
