"""The shop's services, one line each: the catalog everything else is built from.

The topology (the admin declares all of it, each process its own part), the broker users'
permissions (shop/broker_users.py), the processes of `shop up`, the migrations, the
dashboard's and /metrics' figures, the contract documents (docs/asyncapi.yaml) and the
tests' settings all come from `CATALOG`. A new service is one package with its
`service.py` (see docs/architecture.md, "Adding a service") and one line here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace

from coupon_service.service import SERVICE as COUPON
from inventory_service.service import SERVICE as INVENTORY
from messaging.service import Service
from messaging.settings import DEFAULT_AMQP_URL, EnvReader, ServiceSettings, own_amqp_url
from messaging.topology import Topology
from notification_service.service import SERVICE as NOTIFICATION
from order_service.service import SERVICE as ORDER

MONITORING_AMQP_VARIABLE = "MONITORING_AMQP_URL"


@dataclass(frozen=True)
class ShopSettings:
    """Every service's settings, read once from the environment; the shared ones (retention,
    the management API) are the same in each, as their variables are.

    `amqp_url` is AMQP_URL: the broker as its admin, who declares the whole topology
    (`shop up`, `shop topology`, `shop status`, `shop dlq`). Each service connects with its
    own settings' `amqp_url` (its `<NAME>_AMQP_URL`, else AMQP_URL), and the operations
    pages read the broker as `monitoring_url` (MONITORING_AMQP_URL, else AMQP_URL)."""

    services: Mapping[str, ServiceSettings]
    amqp_url: str = DEFAULT_AMQP_URL
    monitoring_amqp_url: str | None = None

    def of(self, name: str) -> ServiceSettings:
        return self.services[name]

    @property
    def monitoring_url(self) -> str:
        return self.monitoring_amqp_url or self.amqp_url

    @property
    def rabbitmq_management_url(self) -> str | None:
        return next(iter(self.services.values())).rabbitmq_management_url

    def with_service(self, name: str, **changes: object) -> ShopSettings:
        """The same, with one service's settings changed."""
        services = {**self.services, name: self.of(name).with_changes(**changes)}
        return replace(self, services=services)

    def with_changes(self, **changes: object) -> ShopSettings:
        """Each change made wherever that field is: in every service's settings that has it
        (as one environment variable reaches every process) and in the shop's own
        (`amqp_url` is both); a field nobody has is an error."""
        own = {field.name for field in fields(self)} - {"services"}
        known = own | {field.name for s in self.services.values() for field in fields(s)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"no service has the setting {', '.join(unknown)}")
        changed = {}
        for name, settings in self.services.items():
            theirs = {field.name for field in fields(settings)}
            changed[name] = settings.with_changes(
                **{key: value for key, value in changes.items() if key in theirs}
            )
        shared = {key: value for key, value in changes.items() if key in own}
        return replace(self, services=changed, **shared)  # type: ignore[arg-type]


class Catalog:
    def __init__(self, services: Iterable[Service]) -> None:
        self.services = tuple(services)
        self._by_name = {service.name: service for service in self.services}
        if len(self._by_name) != len(self.services):
            raise ValueError("two services of the catalog have one name")

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)

    @property
    def names(self) -> list[str]:
        return [service.name for service in self.services]

    def get(self, name: str) -> Service:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self.names)
            raise KeyError(f"no service is called {name!r}; the services are: {known}") from None

    def settings_from_env(self, environ: Mapping[str, str] | None = None) -> ShopSettings:
        env = EnvReader(os.environ if environ is None else environ)
        monitoring = env.optional_text(MONITORING_AMQP_VARIABLE)
        return ShopSettings(
            {s.name: s.settings.from_env(env.environ) for s in self.services},
            amqp_url=own_amqp_url(env, ""),
            monitoring_amqp_url=monitoring and own_amqp_url(env, MONITORING_AMQP_VARIABLE),
        )

    def default_settings(self) -> ShopSettings:
        return ShopSettings({s.name: s.settings() for s in self.services})

    def topology(self, settings: ShopSettings | None = None) -> Topology:
        """Every service's queues (with its settings: e.g. the flash-sale queue's limit)."""
        chosen = settings or self.default_settings()
        return Topology(
            tuple(q for s in self.services for q in s.owned_queues(chosen.of(s.name))),
            broadcasts=frozenset().union(*(s.broadcasts for s in self.services)),
        )


CATALOG = Catalog([ORDER, INVENTORY, COUPON, NOTIFICATION])
