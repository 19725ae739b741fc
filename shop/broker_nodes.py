"""Extra local RabbitMQ nodes, started from the distribution's rabbitmq-server: start,
status, stop_app/start_app (a broker outage) and stop (which also deletes the node's files).

Each node has its own name, AMQP port, distribution port, data and log directories and
config file, so it never touches the machine's own broker (rabbit@localhost on 5672) or
its /etc/rabbitmq/rabbitmq.conf. `shop chaos` runs the shop on one; a cluster or a lab can
start several. Commands run as the `rabbitmq` user when we are root (see local_servers.py).

    node = start_node("chaos")
    node.amqp_url          # amqp://guest:guest@127.0.0.1:PORT/%2F
    stop_app(node); start_app(node)
    stop_node(node)
"""

from __future__ import annotations

import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from shop.local_servers import (
    Missing,
    free_port,
    remove_tree,
    run_as,
    scratch_directory,
    service_user,
    wait_until,
)

BIN_DIRECTORIES = (Path("/usr/lib/rabbitmq/bin"), Path("/usr/local/lib/rabbitmq/bin"))
START_TIMEOUT = 60.0
INSTALL_HINT = "install the rabbitmq-server package (apt-get install rabbitmq-server)"


class NodeFailed(Exception):
    """A node did not start or did not answer a command; the message has its output."""


@dataclass(frozen=True)
class BrokerNode:
    name: str  # the Erlang node name, e.g. chaos-1a2b@localhost
    amqp_port: int
    dist_port: int
    directory: Path  # data, logs and config; deleted by stop_node
    user: str | None  # who runs its commands (None: we do)
    bin_directory: Path

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def log_file(self) -> Path:
        return self.directory / "log" / f"{self.name}.log"


def find_bin_directory() -> Path:
    for directory in BIN_DIRECTORIES:
        if (directory / "rabbitmq-server").exists():
            return directory
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise Missing(f"rabbitmq-server is not installed: {INSTALL_HINT}")
    return Path(found).resolve().parent


def start_node(prefix: str = "extra", amqp_port: int | None = None) -> BrokerNode:
    """Start a new empty node on free ports and wait until it accepts AMQP connections."""
    bin_directory = find_bin_directory()
    user = service_user("rabbitmq")
    name = f"{prefix}-{secrets.token_hex(3)}@localhost"
    directory = scratch_directory(f"shop-{prefix}-rabbitmq-", user)
    node = BrokerNode(name, amqp_port or free_port(), free_port(), directory, user, bin_directory)
    config = directory / "rabbitmq.conf"
    config.write_text(f"listeners.tcp.local = 127.0.0.1:{node.amqp_port}\n")
    (directory / "enabled_plugins").write_text("[].\n")
    if user is not None:
        for path in (config, directory / "enabled_plugins"):
            shutil.chown(path, user)
    started = run_as(
        user,
        [str(bin_directory / "rabbitmq-server"), "-detached"],
        _environment(node),
    )
    if started.returncode != 0:
        remove_tree(directory)
        raise NodeFailed(f"rabbitmq-server for {name} failed: {started.stderr or started.stdout}")
    try:
        # The node registers with epmd a moment after -detached returns: retry until then.
        wait_until(
            lambda: _ctl(node, "await_startup", "--timeout", "10").returncode == 0,
            START_TIMEOUT,
            f"RabbitMQ node {name} to start",
            pause=0.5,
        )
        wait_until(lambda: accepts_amqp(node), START_TIMEOUT, f"AMQP on port {node.amqp_port}")
    except TimeoutError as error:
        stop_node(node)
        raise NodeFailed(f"{error} (see {node.log_file})") from None
    return node


def _environment(node: BrokerNode) -> dict[str, str]:
    directory = node.directory
    return {
        "RABBITMQ_NODENAME": node.name,
        "RABBITMQ_NODE_PORT": str(node.amqp_port),
        "RABBITMQ_DIST_PORT": str(node.dist_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
    }


def _ctl(node: BrokerNode, *arguments: str, timeout: float = 60):
    argv = [str(node.bin_directory / "rabbitmqctl"), "-n", node.name, *arguments]
    return run_as(node.user, argv, timeout=timeout)


def ctl(node: BrokerNode, *arguments: str) -> str:
    """`rabbitmqctl -n NODE ARGUMENTS...`; NodeFailed when it fails."""
    result = _ctl(node, *arguments)
    if result.returncode != 0:
        raise NodeFailed(f"rabbitmqctl {' '.join(arguments)} on {node.name}: {result.stderr}")
    return result.stdout


def accepts_amqp(node: BrokerNode) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", node.amqp_port), timeout=1):
            return True
    except OSError:
        return False


def status(node: BrokerNode) -> str:
    """`running` when the node's RabbitMQ application accepts AMQP connections, else `stopped`."""
    return "running" if accepts_amqp(node) else "stopped"


def stop_app(node: BrokerNode) -> None:
    """Stop the RabbitMQ application (connections drop; the Erlang node stays up)."""
    ctl(node, "stop_app")


def start_app(node: BrokerNode) -> None:
    ctl(node, "start_app")
    wait_until(lambda: accepts_amqp(node), START_TIMEOUT, f"AMQP on port {node.amqp_port}")


def stop_node(node: BrokerNode) -> None:
    """Stop the whole node and delete its files."""
    _ctl(node, "stop", timeout=120)
    remove_tree(node.directory)
