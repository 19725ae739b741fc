"""The chaos run's stage: everything it breaks is its own, so it disturbs nobody.

A throwaway RabbitMQ node (shop/broker_nodes.py), on PostgreSQL a throwaway cluster
(shop/postgres_instances.py) with one database per service, else SQLite files in the run's
working directory, and `shop up` on a free port (shop/running_shop.py). All of it is
stopped and deleted when the block ends, whatever happened inside it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from shop import broker_nodes, postgres_instances
from shop.broker_nodes import BrokerNode
from shop.catalog import CATALOG
from shop.postgres_instances import PostgresInstance
from shop.running_shop import RunningShop, running_shop

# Each service's database variable, and the name of its database or SQLite file (its
# default file's: ORDER_DATABASE_URL -> "orders").
DATABASES = {
    service.settings.DATABASE_VARIABLE: Path(
        str(make_url(service.settings().database_url).database)
    ).stem
    for service in CATALOG
}


@dataclass
class Stage:
    node: BrokerNode
    postgres: PostgresInstance | None
    shop: RunningShop
    admin_token: str
    database_urls: dict[str, str]  # ORDER_DATABASE_URL: url, ...

    @property
    def base_url(self) -> str:
        return self.shop.base


@contextmanager
def stage(database: str, workdir: Path) -> Iterator[Stage]:
    with ExitStack() as cleanup:
        node = broker_nodes.start_node("chaos")
        cleanup.callback(broker_nodes.stop_node, node)
        postgres = None
        if database == "postgresql":
            postgres = postgres_instances.start_instance("chaos")
            cleanup.callback(postgres_instances.stop_instance, postgres)
            urls = {
                variable: postgres_instances.create_database(postgres, name)
                for variable, name in DATABASES.items()
            }
        else:
            (workdir / "var").mkdir(parents=True, exist_ok=True)
            urls = {
                variable: f"sqlite:///{workdir / 'var' / name}.db"
                for variable, name in DATABASES.items()
            }
        token = secrets.token_urlsafe(24)
        shop = cleanup.enter_context(
            running_shop(workdir, node.amqp_url, SHOP_ADMIN_TOKEN=token, **urls)
        )
        yield Stage(node, postgres, shop, token, urls)
