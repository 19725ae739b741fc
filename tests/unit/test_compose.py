import re
import shlex
from pathlib import Path

import pytest
import yaml

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
