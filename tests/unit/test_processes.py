"""What `shop up` starts: the web app and every service of the catalog, and replicas with
--scale (which SQLite refuses, saying why)."""

import pytest

from shop.catalog import CATALOG
from shop.processes import ScaleError, parse_scale, process_specs, replica_problem

POSTGRES = "postgresql+psycopg://shop@db/shop"


def test_scale_is_name_equals_count():
    assert parse_scale("inventory=2, web=4,") == {"inventory": 2, "web": 4}
    assert parse_scale("") == {}


@pytest.mark.parametrize("text", ["inventory", "inventory=0", "inventory=two", "payments=2"])
def test_a_bad_scale_says_what_it_takes(text):
    with pytest.raises(ScaleError, match="NAME=N"):
        parse_scale(text)


def test_replicas_are_more_processes_of_a_service_and_more_web_workers():
    specs = process_specs(CATALOG.default_settings(), {"inventory": 3, "web": 4})
    names = [spec.name for spec in specs]
    assert names.count("web") == 1 and names[0] == "web"
    assert [n for n in names if n.startswith("inventory")] == [
        "inventory",
        "inventory-2",
        "inventory-3",
    ]
    assert all(spec.argv[-1] == "inventory" for spec in specs if spec.name.startswith("inventory"))
    web = specs[0].argv
    assert web[web.index("--workers") + 1] == "4"


def test_the_access_log_is_asked_for():
    assert "--access-logfile" not in process_specs(CATALOG.default_settings())[0].argv
    assert "--access-logfile" in process_specs(CATALOG.default_settings(), access_log=True)[0].argv


def test_replicas_of_a_service_on_sqlite_are_refused_with_the_reason():
    settings = CATALOG.default_settings()
    problem = replica_problem(settings, {"inventory": 2})
    assert problem and "SQLite" in problem and "INVENTORY_DATABASE_URL" in problem
    assert replica_problem(settings, {"web": 4, "inventory": 1}) is None
    on_postgres = settings.with_service("inventory", database_url=POSTGRES)
    assert replica_problem(on_postgres, {"inventory": 2}) is None
