import os

import pytest

from tests.support.broker import Broker, find_broker
from tests.support.databases import create_postgres_database, drop_postgres_database, find_postgres
from tests.support.threads import Running


@pytest.fixture(scope="session")
def broker() -> Broker:
    found = find_broker(dict(os.environ))
    if isinstance(found, str):
        pytest.fail(f"integration tests need RabbitMQ: {found}", pytrace=False)
    return found


@pytest.fixture
def amqp_url(broker: Broker):
    """A fresh vhost on the test broker, deleted afterwards."""
    vhost = broker.create_vhost()
    yield broker.url_for(vhost)
    broker.delete_vhost(vhost)


@pytest.fixture(scope="session")
def postgres_base_url() -> str | None:
    return find_postgres(dict(os.environ))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_base_url):
    """An empty database of each kind: a SQLite file, and a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    if postgres_base_url is None:
        pytest.skip("no PostgreSQL: set TEST_POSTGRES_URL (CI does) or run a Docker engine")
    url = create_postgres_database(postgres_base_url)
    yield url
    drop_postgres_database(postgres_base_url, url)


@pytest.fixture
def start_in_thread():
    """Start something with .run(stop) in a thread; it is stopped when the test ends."""
    running: list[Running] = []

    def start(target) -> Running:
        running.append(Running(target))
        return running[-1]

    yield start
    for item in running:
        item.close()
