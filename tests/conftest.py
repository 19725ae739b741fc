import os

import pytest

from tests.support.broker import ENABLE_MANAGEMENT, Broker, VhostError, find_broker
from tests.support.databases import create_postgres_database, drop_postgres_database, find_postgres
from tests.support.threads import Running

VHOSTS_PER_RABBITMQCTL_CALL = 8  # without the management API; see shop/vhosts.py


@pytest.fixture(scope="session")
def broker():
    found = find_broker(dict(os.environ), batch=VHOSTS_PER_RABBITMQCTL_CALL)
    if isinstance(found, str):
        pytest.fail(f"integration tests need RabbitMQ: {found}", pytrace=False)
    yield found
    try:
        found.close()
    except VhostError as error:
        pytest.fail(f"could not delete the tests' vhosts: {error}", pytrace=False)


@pytest.fixture
def amqp_url(broker: Broker):
    """A fresh vhost on the test broker, deleted afterwards."""
    try:
        vhost = broker.create_vhost()
    except VhostError as error:
        pytest.fail(f"could not make a vhost for the test: {error}", pytrace=False)
    yield broker.url_for(vhost)
    try:
        broker.delete_vhost(vhost)
    except VhostError as error:
        pytest.fail(f"could not delete the test's vhost: {error}", pytrace=False)


@pytest.fixture
def management_url(broker: Broker) -> str:
    """The broker's management API; a test that needs it is skipped where it does not
    answer, since only it knows the unacked and redelivery counts."""
    if broker.management_url is None:
        pytest.skip(
            "no RabbitMQ management API, so unacked and redelivery counts are not checked "
            f"(everything else is, over AMQP): `{ENABLE_MANAGEMENT}` to check them"
        )
    return broker.management_url


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


@pytest.fixture
def figures(record_property):
    """`say(line)`: a figure a test measured (never asserted), printed and shown again in the
    run's summary, also when pytest-xdist runs the test on a worker whose output is hidden."""

    def say(line: str) -> None:
        print(line)
        record_property("figures", line)

    return say


def pytest_terminal_summary(terminalreporter):
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]
    said = [
        (report.nodeid, value)
        for report in reports
        for name, value in getattr(report, "user_properties", [])
        if name == "figures"
    ]
    if said:
        terminalreporter.section("figures the tests measured (printed, never asserted)")
        for nodeid, line in said:
            terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {line.strip()}")
