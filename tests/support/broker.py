"""The RabbitMQ for the tests: AMQP_URL from the environment (or the default), a container
only where a Docker engine answers. Each test gets a fresh vhost on it (shop/vhosts.py,
which the benchmarks and the labs use too), so nobody sees another's messages."""

from __future__ import annotations

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from messaging.settings import DEFAULT_AMQP_URL
from shop.vhosts import ENABLE_MANAGEMENT, Broker, VhostError

__all__ = ["ENABLE_MANAGEMENT", "Broker", "VhostError", "find_broker"]


def find_broker(environ: dict[str, str], batch: int = 1) -> Broker | str:
    """The broker to test against, or a sentence saying why there is none."""
    url = environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    try:
        close_quietly(open_connection(url, "tests: probe", timeout=3))
    except BrokerUnavailable as error:
        container = _start_container()
        if container is None:
            return f"{error}; set AMQP_URL, or run a Docker engine for testcontainers"
        return container
    return Broker.at(url, environ.get("RABBITMQ_MANAGEMENT_URL"), batch)


def _start_container() -> Broker | None:
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # pragma: no cover - testcontainers is a dev dependency
        return None
    try:
        container = RabbitMqContainer("rabbitmq:3.13-management")
        container.with_exposed_ports(5672, 15672)
        container.start()
    except Exception:  # no Docker engine answers
        return None
    host = container.get_container_host_ip()
    amqp = f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/%2F"
    management = f"http://{host}:{container.get_exposed_port(15672)}"
    return Broker(amqp, management)
