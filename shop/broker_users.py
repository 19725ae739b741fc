"""Least privilege on the broker: a RabbitMQ user per service, and one that only watches.

Each service's user may touch its own queues and nothing else of another service: the
permissions are derived from its catalog entry (messaging/service.py), never written by
hand, so a new queue or a new call changes them by itself. `shop topology --users` creates
them (shop/cli/running.py), through the management API, as the admin of AMQP_URL.

What RabbitMQ 3.10 checks (its access-control guide, and tried on the broker), and so
what each service gets, as regular expressions of names (`^(a|b)$`):

- configure: its work queues, which each of its processes declares again when it connects
  (the arguments are checked: a changed limit is an error, not a silent difference).
  Creating them is the admin's (`shop up`, `shop topology`): creating a queue with
  `x-dead-letter-exchange` takes write on `shop.dead-letter` too (and read on the queue),
  which would let the service publish into every dead-letter queue; declaring it again
  once it exists takes only configure. So are the `.dead` queues (binding one to
  `shop.dead-letter` takes read on it, which would let a service bind a queue of its own
  there and read every service's dead letters) and the exchanges: declaring one takes
  configure on it even when it exists, and configure would let a service delete it. A
  process only checks those (a passive declare takes no permission: messaging/topology.py).
- write: its work queues that are bound to `shop.events` (binding a queue takes write
  on it and read on the exchange), `shop.events` when it announces events, and
  `amq.default` (the default exchange's name in permission checks) when it publishes into
  a queue directly: the order service's RPC questions to `coupons.rpc` and its flash-sale
  requests, the coupon service's RPC replies (a reply to `amq.rabbitmq.reply-to` goes
  through the default exchange too). Write on `amq.default` lets it publish into any
  queue by name: RabbitMQ has no finer grain for the default exchange (topic permissions
  apply to topic exchanges only).
- read: its work queues (to consume), `shop.events` when it binds a queue to it.
  Consuming from direct reply-to (`amq.rabbitmq.reply-to`, the RPC client) takes no
  permission. A server-named queue (`amq.gen-...`, each web process's broadcast listener)
  takes all three on `amq\\.gen-.*`.
- Dead-lettering (a rejected message, the delivery limit) is the broker's own act: the
  consumer needs no permission on `shop.dead-letter`.

The monitoring user (the dashboard, /api/pipeline, /metrics) has the `monitoring` tag, so
the management API shows it every queue of every vhost, and no permission on any
resource: its AMQP fallback only counts with passive declares. Its permissions entry
(`^$` three times) is what lets it open a connection to the vhost at all.

Passwords come from the environment, one variable per user (`SHOP_BROKER_PASSWORD_ORDER`,
..., `SHOP_BROKER_PASSWORD_MONITORING`); there is no default. A process connects as its
user through its own URL variable (`ORDER_AMQP_URL`, ..., `MONITORING_AMQP_URL`), which
`url_variables()` composes from AMQP_URL and the passwords.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from messaging.management import ENABLE_MANAGEMENT, ManagementApi, ManagementError, first_url
from messaging.service import Service
from messaging.settings import vhost_of, with_user
from messaging.topology import EVENTS_EXCHANGE, Topology
from shop.catalog import CATALOG, MONITORING_AMQP_VARIABLE, Catalog, ShopSettings

USER_PREFIX = "shop-"
MONITORING = "monitoring"
PASSWORD_VARIABLE = "SHOP_BROKER_PASSWORD_{role}"
DEFAULT_EXCHANGE = "amq.default"  # the default exchange ("") in permission checks
SERVER_NAMED = r"amq\.gen-.*"  # queues the broker names (declared with an empty name)
NOTHING = "^$"


class UsersError(RuntimeError):
    """The users cannot be made; the message says why and what to do, in one sentence."""


@dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str

    def as_json(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


@dataclass(frozen=True)
class BrokerUser:
    role: str  # a service's name, or "monitoring"
    name: str  # e.g. shop-inventory
    permissions: Permissions
    url_variable: str  # the process connects with this URL, e.g. INVENTORY_AMQP_URL
    tags: tuple[str, ...] = ()

    @property
    def password_variable(self) -> str:
        return PASSWORD_VARIABLE.format(role=self.role.upper())


def pattern(names: Iterable[str], *raw: str) -> str:
    """A regular expression that matches exactly these names (and the `raw` patterns)."""
    choices = [re.escape(name).replace("\\-", "-") for name in dict.fromkeys(names)]
    choices += raw
    return f"^({'|'.join(choices)})$" if choices else NOTHING


def service_user(service: Service, topology: Topology, prefix: str = USER_PREFIX) -> BrokerUser:
    """What `service`'s processes need of the broker, and nothing more (see above)."""
    for queue in service.sends_to:
        topology.queue(queue)  # KeyError for a queue the shop does not have
    own = topology.queues_of(service.name)
    queues = [queue.name for queue in own]
    bound = [queue.name for queue in own if queue.bindings]
    listening = (SERVER_NAMED,) if service.listens_for else ()
    write = list(bound)
    if service.publishes:
        write.append(EVENTS_EXCHANGE)
    if service.sends_to or service.answers:
        write.append(DEFAULT_EXCHANGE)
    read = list(queues)
    if bound or listening:
        read.append(EVENTS_EXCHANGE)
    return BrokerUser(
        service.name,
        prefix + service.name,
        Permissions(
            pattern(queues, *listening), pattern(write, *listening), pattern(read, *listening)
        ),
        service.settings.amqp_variable(),
    )


def monitoring_user(prefix: str = USER_PREFIX) -> BrokerUser:
    return BrokerUser(
        MONITORING,
        prefix + MONITORING,
        Permissions(NOTHING, NOTHING, NOTHING),
        MONITORING_AMQP_VARIABLE,
        tags=("monitoring",),
    )


def broker_users(
    settings: ShopSettings, catalog: Catalog = CATALOG, prefix: str = USER_PREFIX
) -> list[BrokerUser]:
    """Every service's user, then the monitoring user."""
    topology = catalog.topology(settings)
    return [service_user(s, topology, prefix) for s in catalog] + [monitoring_user(prefix)]


def passwords(users: Iterable[BrokerUser], environ: Mapping[str, str]) -> dict[str, str]:
    """{user name: password} from the environment; UsersError naming every variable unset."""
    users = list(users)
    missing = [user.password_variable for user in users if not environ.get(user.password_variable)]
    if missing:
        raise UsersError(
            f"set {', '.join(missing)}: the password of each broker user (no default); "
            f"e.g. export {missing[0]}=$(openssl rand -hex 24)"
        )
    return {user.name: environ[user.password_variable] for user in users}


def url_variables(
    users: Iterable[BrokerUser], amqp_url: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """{INVENTORY_AMQP_URL: the nodes of AMQP_URL as shop-inventory, ...}: the environment
    that makes every process connect as its own user."""
    users = list(users)
    secret = passwords(users, environ)
    return {user.url_variable: with_user(amqp_url, user.name, secret[user.name]) for user in users}


def create_users(
    users: Iterable[BrokerUser],
    amqp_url: str,
    environ: Mapping[str, str],
    management_url: str | None = None,
) -> str:
    """Create (or update) every user with its password, tags and permissions on AMQP_URL's
    vhost, as AMQP_URL's user (who must be an administrator); returns the vhost."""
    users = list(users)
    secret = passwords(users, environ)  # every password, before anything is made
    api = ManagementApi.for_broker(amqp_url, management_url, timeout=10)
    vhost = vhost_of(first_url(amqp_url))
    try:
        for user in users:
            api.put(
                f"/api/users/{api.quoted(user.name)}",
                {"password": secret[user.name], "tags": ",".join(user.tags)},
            )
            api.put(
                f"/api/permissions/{api.quoted(vhost)}/{api.quoted(user.name)}",
                user.permissions.as_json(),
            )
    except ManagementError as error:
        hint = "" if error.status else f" ({ENABLE_MANAGEMENT})"
        raise UsersError(f"cannot make the broker users: {error}{hint}") from error
    return vhost


def delete_users(
    users: Iterable[BrokerUser], amqp_url: str, management_url: str | None = None
) -> None:
    """Delete the users (their connections are closed); one already gone is fine."""
    api = ManagementApi.for_broker(amqp_url, management_url, timeout=10)
    for user in users:
        try:
            api.delete(f"/api/users/{api.quoted(user.name)}")
        except ManagementError as error:
            if error.status != 404:
                raise
