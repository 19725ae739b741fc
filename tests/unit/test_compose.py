import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from messaging.settings import amqp_urls
from shop.catalog import CATALOG
from shop.processes import process_specs

ROOT = Path(__file__).resolve().parents[2]

# The configuration table of CONTRACT.md: every container of the shop needs all of it.
CONTRACT_VARIABLES = [
    "AMQP_URL",
    "ORDER_DATABASE_URL",
    "INVENTORY_DATABASE_URL",
    "COUPON_DATABASE_URL",
    "NOTIFICATION_DATABASE_URL",
    "SHOP_HTTP_HOST",
    "SHOP_HTTP_PORT",
    "SHOP_ADMIN_TOKEN",
    "FLASH_SALE_QUEUE_LIMIT",
    "SMS_GATEWAY_URL",
]

PROCESS_NAMES = [spec.name for spec in process_specs(CATALOG.default_settings())]
WORKER_NAMES = [name for name in PROCESS_NAMES if name != "web"]


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return compose["services"]


def command_words(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def environment_names(service: dict) -> set[str]:
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return set(environment)
    return {entry.split("=", 1)[0] for entry in environment}


def test_the_process_list_has_the_web_app_and_every_runnable():
    assert PROCESS_NAMES[0] == "web"
    assert set(WORKER_NAMES) == set(CATALOG.names)
    assert WORKER_NAMES, "shop up runs at least one background process"


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_every_process_of_shop_up_has_its_own_container(services, name):
    assert name in services, f"compose.yaml has no service for the process {name!r}"


@pytest.mark.parametrize("name", WORKER_NAMES)
def test_each_background_container_runs_its_own_process(services, name):
    words = command_words(services[name])
    assert words[-3:] == ["shop", "run", name]


def test_the_web_container_runs_the_app_of_shop_up_under_gunicorn(services):
    (web_spec,) = [spec for spec in process_specs(CATALOG.default_settings()) if spec.name == "web"]
    words = command_words(services["web"])
    assert words[0] == "gunicorn"
    assert words[-1] == web_spec.argv[-1]
    assert words[words.index("--bind") + 1] == "0.0.0.0:8000"


def test_the_web_container_publishes_port_8000(services):
    published = [str(port) for port in services["web"].get("ports", [])]
    assert any(re.fullmatch(r"(.*:)?8000:8000(/tcp)?", port) for port in published), published


@pytest.mark.parametrize("name", [*PROCESS_NAMES, "migrate"])
def test_every_shop_container_gets_the_whole_configuration(services, name):
    missing = set(CONTRACT_VARIABLES) - environment_names(services[name])
    assert not missing, f"{name} lacks {sorted(missing)}"


@pytest.mark.parametrize("name", [*PROCESS_NAMES, "migrate"])
def test_shop_containers_reach_the_broker_and_postgres_by_service_name(services, name):
    environment = services[name]["environment"]
    assert "@rabbitmq:5672/" in environment["AMQP_URL"]
    for variable in CONTRACT_VARIABLES:
        if variable.endswith("_DATABASE_URL"):
            assert environment[variable].startswith("postgresql+psycopg://")
            assert "@postgres:5432/" in environment[variable]


def test_no_admin_token_is_written_in_the_file(services):
    token = services["web"]["environment"]["SHOP_ADMIN_TOKEN"]
    # Only taken from the environment, with an empty default: never a literal secret.
    assert token == "${SHOP_ADMIN_TOKEN:-}", token


@pytest.mark.parametrize("name", PROCESS_NAMES)
def test_processes_start_after_the_migrations_and_restart(services, name):
    service = services[name]
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert service["restart"] == "unless-stopped"


def test_migrate_is_a_one_shot_job_after_the_broker_and_the_database(services):
    migrate = services["migrate"]
    assert command_words(migrate) == ["shop", "migrate"]
    assert migrate.get("restart") == "no"
    assert "build" in migrate
    for dependency in ("rabbitmq", "postgres"):
        assert migrate["depends_on"][dependency]["condition"] == "service_healthy"


def test_rabbitmq_has_the_management_ui_and_a_healthcheck(services):
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:")
    assert "management" in rabbitmq["image"]
    assert "rabbitmq-diagnostics" in rabbitmq["healthcheck"]["test"]


def test_postgres_creates_one_database_per_service(services):
    postgres = services["postgres"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    for database in ("orders", "inventory", "coupons", "notifications"):
        assert f"CREATE DATABASE {database};" in init_sql
    assert any("docker-entrypoint-initdb.d" in str(volume) for volume in postgres["volumes"])


def test_the_dockerfile_starts_the_shop_command():
    dockerfile = (ROOT / "Dockerfile").read_text()
    starts = [
        line
        for line in dockerfile.splitlines()
        if line.strip().upper().startswith(("CMD", "ENTRYPOINT"))
    ]
    assert starts, "the Dockerfile has no CMD or ENTRYPOINT"
    assert any("shop" in line for line in starts)
    # The tree itself is installed: each service's migrations are package data of it.
    assert re.search(r"pip install [^\n]*\s\.$", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE), "runs as root"


# The `cluster` profile: a second shop on three RabbitMQ nodes (compose.yaml's header).
NODES = ["rabbit-1", "rabbit-2", "rabbit-3"]
CLUSTER_CONFIG = ROOT / "deploy" / "rabbitmq-cluster.conf"


def in_cluster_profile(service: dict) -> bool:
    return "cluster" in (service.get("profiles") or [])


def test_the_default_stack_knows_nothing_of_the_cluster(services):
    default = {name: service for name, service in services.items() if not service.get("profiles")}
    assert set(default) >= {"rabbitmq", "postgres", "migrate", *PROCESS_NAMES}
    for name, service in default.items():
        assert not set(service.get("depends_on") or {}) - set(default), name
        environment = service.get("environment") or {}
        if "AMQP_URL" in environment:
            assert environment["AMQP_URL"] == "amqp://guest:guest@rabbitmq:5672/%2F", name


@pytest.mark.parametrize("name", NODES)
def test_the_cluster_profile_has_three_rabbitmq_nodes(services, name):
    node = services[name]
    assert in_cluster_profile(node)
    assert node["image"].startswith("rabbitmq:") and "management" in node["image"]
    assert node["hostname"] == name  # its node name is rabbit@<hostname>
    mounts = [str(volume) for volume in node["volumes"]]
    assert "./deploy/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in mounts
    assert any(mount.endswith(":/var/lib/rabbitmq") for mount in mounts)  # its own data
    # Healthy only once all three run in one cluster, so queues get all three members.
    assert "await_online_nodes 3" in " ".join(node["healthcheck"]["test"])


def test_the_nodes_publish_distinct_ports(services):
    published = [str(port).split(":")[0] for name in NODES for port in services[name]["ports"]]
    assert len(published) == len(set(published)) == 6


def test_the_nodes_find_each_other_by_classic_config_peer_discovery(services):
    settings = {}
    for line in CLUSTER_CONFIG.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    assert settings.pop("cluster_formation.peer_discovery_backend") == "classic_config"
    listed = {
        value
        for key, value in settings.items()
        if key.startswith("cluster_formation.classic_config.nodes.")
    }
    assert listed == {f"rabbit@{services[name]['hostname']}" for name in NODES}


def test_the_nodes_share_one_erlang_cookie_from_the_environment(services):
    cookies = {services[name]["environment"]["RABBITMQ_ERLANG_COOKIE"] for name in NODES}
    assert len(cookies) == 1
    (cookie,) = cookies
    assert re.fullmatch(r"\$\{RABBITMQ_ERLANG_COOKIE(:?-)?\}", cookie), "a literal cookie"


@pytest.mark.parametrize("name", [*PROCESS_NAMES, "migrate"])
def test_every_shop_process_has_a_copy_on_the_cluster_that_lists_all_three_nodes(services, name):
    default, copy = services[name], services[f"cluster-{name}"]
    assert in_cluster_profile(copy)
    assert command_words(copy) == command_words(default)
    assert not set(CONTRACT_VARIABLES) - environment_names(copy)
    urls = amqp_urls(copy["environment"]["AMQP_URL"])  # also: a valid AMQP_URL
    assert sorted(urlsplit(url).hostname for url in urls) == NODES
    assert {urlsplit(url).port for url in urls} == {5672}
    for variable in CONTRACT_VARIABLES:
        if variable.endswith("_DATABASE_URL"):
            assert "@cluster-postgres:5432/" in copy["environment"][variable]
    for node in NODES:
        assert copy["depends_on"][node]["condition"] == "service_healthy"


def test_the_shop_on_the_cluster_has_its_own_web_port_and_database(services):
    assert [str(port) for port in services["cluster-web"]["ports"]] == ["8001:8000"]
    assert in_cluster_profile(services["cluster-postgres"])
    assert services["cluster-postgres"]["volumes"][0].startswith("cluster-postgres-data:")
