"""pyproject.toml names the service packages by hand in three places the catalog cannot
reach (what gets installed, what import-linter looks at, and its contracts). A service in
the catalog that is missing from one of them would be left out of the wheel, or escape
"services never import each other" without a word: this test says which."""

import tomllib
from pathlib import Path

import pytest

from shop.catalog import CATALOG

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
IMPORT_LINTER = PYPROJECT["tool"]["importlinter"]
CONTRACTS = {contract["name"]: contract for contract in IMPORT_LINTER["contracts"]}
SERVICE_PACKAGES = sorted(service.package for service in CATALOG)


def test_every_service_package_is_installed():
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert [p for p in SERVICE_PACKAGES if f"{p}*" not in included] == []


def test_import_linter_looks_at_every_service_package():
    assert [p for p in SERVICE_PACKAGES if p not in IMPORT_LINTER["root_packages"]] == []


@pytest.mark.parametrize(
    ("contract", "key"),
    [
        ("Services never import each other", "modules"),
        ("Messaging knows no service", "forbidden_modules"),
        ("Only the shop command wires the services together", "source_modules"),
        ("Load tests talk to the shop over HTTP only", "forbidden_modules"),
        (
            "The product never imports the tests (the benches may: bench/ is not product)",
            "source_modules",
        ),
    ],
)
def test_each_contract_about_the_services_names_every_one(contract, key):
    named = CONTRACTS[contract][key]
    assert [p for p in SERVICE_PACKAGES if p not in named] == [], contract
