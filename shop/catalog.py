"""The shop's services, one line each: the catalog everything else is built from.

The topology every process declares, the processes of `shop up`, the migrations, the
dashboard's and /metrics' figures, the contract documents (docs/asyncapi.yaml) and the
tests' settings all come from `CATALOG`. A new service is one package with its
`service.py` (see docs/architecture.md, "Adding a service") and one line here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

from coupon_service.service import SERVICE as COUPON
from inventory_service.service import SERVICE as INVENTORY
from messaging.service import Service
from messaging.settings import ServiceSettings
from messaging.topology import Topology
from notification_service.service import SERVICE as NOTIFICATION
from order_service.service import SERVICE as ORDER


@dataclass(frozen=True)
class ShopSettings:
    """Every service's settings, read once from the environment; the shared ones (the
    broker, retention) are the same in each, as their variables are."""

    services: Mapping[str, ServiceSettings]

    def of(self, name: str) -> ServiceSettings:
        return self.services[name]

    @property
    def amqp_url(self) -> str:
        return next(iter(self.services.values())).amqp_url

    @property
    def rabbitmq_management_url(self) -> str | None:
        return next(iter(self.services.values())).rabbitmq_management_url

    def with_service(self, name: str, **changes: object) -> ShopSettings:
        """The same, with one service's settings changed."""
        return ShopSettings({**self.services, name: self.of(name).with_changes(**changes)})

    def with_changes(self, **changes: object) -> ShopSettings:
        """Each change made in every service's settings that has that field (as one
        environment variable reaches every process); a field nobody has is an error."""
        known = {field.name for settings in self.services.values() for field in fields(settings)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"no service has the setting {', '.join(unknown)}")
        changed = {}
        for name, settings in self.services.items():
            own = {field.name for field in fields(settings)}
            changed[name] = settings.with_changes(
                **{key: value for key, value in changes.items() if key in own}
            )
        return ShopSettings(changed)


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
        env = os.environ if environ is None else environ
        return ShopSettings({s.name: s.settings.from_env(env) for s in self.services})

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
