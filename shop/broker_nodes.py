"""Extra local RabbitMQ nodes, started from the distribution's rabbitmq-server: start,
status, stop_app/start_app (a broker outage), halt/boot (the whole node goes away and comes
back with its data) and stop (which also deletes the node's files).

Each node has its own name, AMQP port, distribution port, data and log directories and
config file, so it never touches the machine's own broker (rabbit@localhost on 5672) or
its /etc/rabbitmq/rabbitmq.conf. `shop chaos` runs the shop on one; `shop cluster`
(shop/cluster.py) joins several into a cluster. Commands run as the `rabbitmq` user when
we are root (see local_servers.py).

    node = start_node("chaos")
    node.amqp_url          # amqp://guest:guest@127.0.0.1:PORT/%2F
    stop_app(node); start_app(node)
    halt(node); boot(node)
    stop_node(node)
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
from dataclasses import asdict, dataclass
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
    management_port: int | None = None  # None: the management plugin is off

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str | None:
        if self.management_port is None:
            return None
        return f"http://127.0.0.1:{self.management_port}"

    def as_json(self) -> dict[str, object]:
        """The node as JSON values, for a state file a later process reads back."""
        fields = asdict(self)
        fields["directory"] = str(self.directory)
        fields["bin_directory"] = str(self.bin_directory)
        return fields

    @classmethod
    def from_json(cls, fields: dict[str, object]) -> BrokerNode:
        values = dict(fields)
        values["directory"] = Path(str(values["directory"]))
        values["bin_directory"] = Path(str(values["bin_directory"]))
        return cls(**values)  # type: ignore[arg-type]

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
    find_bin_directory()  # Missing before anything is made
    directory = scratch_directory(f"shop-{prefix}-rabbitmq-", service_user("rabbitmq"))
    try:
        node = prepare_node(
            f"{prefix}-{secrets.token_hex(3)}@localhost",
            amqp_port or free_port(),
            free_port(),
            directory,
        )
        boot(node)
    except BaseException:
        remove_tree(directory)
        raise
    return node


def prepare_node(
    name: str,
    amqp_port: int,
    dist_port: int,
    directory: Path,
    management_port: int | None = None,
) -> BrokerNode:
    """A node that is not started yet: its config file and plugins file in `directory`
    (which its user can write). With `management_port`, the management plugin listens
    there (on 127.0.0.1, as AMQP does: never beside the machine's own broker on 15672)."""
    user = service_user("rabbitmq")
    node = BrokerNode(
        name, amqp_port, dist_port, directory, user, find_bin_directory(), management_port
    )
    config = [f"listeners.tcp.local = 127.0.0.1:{amqp_port}"]
    plugins = "[]."
    if management_port is not None:
        config += [f"management.tcp.port = {management_port}", "management.tcp.ip = 127.0.0.1"]
        plugins = "[rabbitmq_management]."
    files = {directory / "rabbitmq.conf": "\n".join(config), directory / "enabled_plugins": plugins}
    for path, text in files.items():
        path.write_text(text + "\n")
        if user is not None:
            shutil.chown(path, user)
    return node


def boot(node: BrokerNode) -> None:
    """Start the node (new, or halted with its data) and wait until it accepts AMQP
    connections; NodeFailed (with the node stopped) when it does not."""
    started = run_as(
        node.user,
        [str(node.bin_directory / "rabbitmq-server"), "-detached"],
        _environment(node),
    )
    if started.returncode != 0:
        raise NodeFailed(
            f"rabbitmq-server for {node.name} failed: {started.stderr or started.stdout}"
        )
    try:
        # The node registers with epmd a moment after -detached returns: retry until then.
        wait_until(
            lambda: _ctl(node, "await_startup", "--timeout", "10").returncode == 0,
            START_TIMEOUT,
            f"RabbitMQ node {node.name} to start",
            pause=0.5,
        )
        wait_until(lambda: accepts_amqp(node), START_TIMEOUT, f"AMQP on port {node.amqp_port}")
    except TimeoutError as error:
        halt(node)
        raise NodeFailed(f"{error} (see {node.log_file})") from None


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


def _ctl(node: BrokerNode, *arguments: str, timeout: float = 60, tool: str = "rabbitmqctl"):
    argv = [str(node.bin_directory / tool), "-n", node.name, *arguments]
    return run_as(node.user, argv, timeout=timeout)


def ctl(node: BrokerNode, *arguments: str, tool: str = "rabbitmqctl") -> str:
    """`rabbitmqctl -n NODE ARGUMENTS...` (or another CLI tool of the distribution, e.g.
    `rabbitmq-queues`); its output, NodeFailed when it fails."""
    result = _ctl(node, *arguments, tool=tool)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip()
        raise NodeFailed(f"{tool} {' '.join(arguments)} on {node.name}: {said}")
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


@dataclass(frozen=True)
class Replicas:
    """Where a quorum queue lives: its leader, its members, and the members that answer."""

    leader: str | None
    members: tuple[str, ...]
    online: tuple[str, ...]


def replicas(node: BrokerNode, vhost: str = "/") -> dict[str, Replicas]:
    """{queue: Replicas} of every quorum queue of `vhost`, as `node` sees them. From
    `rabbitmqctl list_queues`: the management API's `members` lag behind a change."""
    output = ctl(
        node, "list_queues", "-q", "-p", vhost, "--formatter", "json",
        "name", "type", "leader", "members", "online",
    )  # fmt: skip
    return {
        queue["name"]: Replicas(
            queue.get("leader") or None,
            tuple(queue.get("members") or ()),
            tuple(queue.get("online") or ()),
        )
        for queue in json.loads(output or "[]")
        if queue.get("type") == "quorum"
    }


def stop_app(node: BrokerNode) -> None:
    """Stop the RabbitMQ application (connections drop; the Erlang node stays up)."""
    ctl(node, "stop_app")


def start_app(node: BrokerNode) -> None:
    ctl(node, "start_app")
    wait_until(lambda: accepts_amqp(node), START_TIMEOUT, f"AMQP on port {node.amqp_port}")


def halt(node: BrokerNode) -> None:
    """Stop the whole node (the Erlang VM too) and keep its files: `boot` brings it back
    with its data, and in a cluster it rejoins as the member it was. Returns once its
    process has exited (rabbitmqctl waits on the pid file); a node that is not running is
    left as it is."""
    _ctl(node, "stop", str(node.directory / "rabbitmq.pid"), timeout=120)


def stop_node(node: BrokerNode) -> None:
    """Stop the whole node and delete its files."""
    halt(node)
    remove_tree(node.directory)
