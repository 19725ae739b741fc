"""The load tests against a real `shop up`: the built-in `shop loadtest flash-sale` sells
exactly the quota and says so, a shop that is not there or a wrong token is one clear line
and exit 2, and the Locust spike runs headless and writes its CSV."""

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support.running_shop import free_port, running_shop

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "loadtest-admin-token"


def environment(**changes: str) -> dict[str, str]:
    return {**os.environ, "SHOP_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **changes}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, broker):
    """One `shop up` (own folder, fresh vhost, free port, known admin token) for the module:
    each load test makes its own product and sale, so they do not see each other."""
    vhost = broker.create_vhost()
    try:
        folder = tmp_path_factory.mktemp("shop")
        with running_shop(folder, broker.url_for(vhost), SHOP_ADMIN_TOKEN=TOKEN) as running:
            yield running.base
    finally:
        broker.delete_vhost(vhost)


def loadtest(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shop", "loadtest", "flash-sale", *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=150,
    )


def test_the_built_in_load_test_sells_exactly_the_quota_and_checks_the_invariants(shop, tmp_path):
    result = loadtest(
        tmp_path, "--customers", "300", "--concurrency", "20", "--quota", "10", "--url", shop
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout
    assert ", won 10, lost " in report
    assert "orders confirmed 10, rejected 0, pending 0" in report
    for invariant in [
        "won == min(quota, distinct accepted customers)",
        "no customer won twice",
        "no admitted ticket left undecided",
        "stock never negative",
        "every won order settled",
    ]:
        assert f"ok    {invariant}" in report, report
    assert "FAIL" not in report and "result: every invariant holds" in report
    assert "requests/s" in report and "p50" in report and "p99" in report
    # stderr is no terminal here: a progress line per 10 %, not a redrawn bar
    assert "\r" not in result.stderr
    purchases = [line for line in result.stderr.splitlines() if line.startswith("purchases:")]
    assert 1 <= len(purchases) <= 10 and purchases[-1] == "purchases: 300/300 (100%)"

    wrong = loadtest(tmp_path, "--customers", "5", "--url", shop, SHOP_ADMIN_TOKEN="wrong")
    assert wrong.returncode == 2
    assert "Traceback" not in wrong.stderr
    (line,) = wrong.stderr.strip().splitlines()
    assert "refused the admin token (403)" in line and "SHOP_ADMIN_TOKEN" in line


def test_the_built_in_load_test_without_a_shop_says_so_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = loadtest(tmp_path, "--customers", "5", "--concurrency", "2", "--url", url)
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"shop loadtest: nothing answers at {url} (connection refused); "
        "start the shop with `shop up`, or pass --url"
    )


def test_the_locust_spike_runs_headless_and_writes_its_csv(shop, tmp_path):
    # find_spec, not import: importing locust would monkey-patch this process with gevent
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (pip install -e '.[dev]')")
    prefix = tmp_path / "flash"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "loadtest" / "locustfile.py"),
            "--headless",
            "--host",
            shop,
            "--csv",
            str(prefix),
            "--users",
            "20",
            "--spawn-rate",
            "20",
            "--run-time",
            "4s",
            "--sale-quota",
            "5",
        ],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "flash_stats.csv").open() as stats:
        rows = {row["Name"]: row for row in csv.DictReader(stats)}
    assert int(rows["purchase"]["Request Count"]) == 20, "one purchase per distinct customer"
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["ticket"]["Request Count"]) > 0, "admitted customers poll their tickets"
    products = requests.get(shop + "/api/products", timeout=5).json()
    spike = [p for p in products if p["sku"].startswith("SPIKE-")]
    assert len(spike) == 1, "the locustfile made its own sale with SHOP_ADMIN_TOKEN"
