"""Every lab, both variants, against the real broker: the sound variant keeps its guarantee
and the broken one shows the failure it is there to show (what `shop lab check` checks,
through the same code); and the `shop lab` command itself. A lab that restarts a broker
starts a throwaway node of its own and is left out where the distribution's
rabbitmq-server is not installed."""

import json
import subprocess
import sys

import pytest

from shop import broker_nodes
from shop.labs import LABS, runner
from shop.local_servers import Missing

pytestmark = pytest.mark.integration


def test_every_lab_behaves_as_it_teaches(broker):
    """`shop lab check`'s code: both variants of every lab, four at a time."""
    labs = LABS
    try:
        broker_nodes.find_bin_directory()
    except Missing as missing:  # only the labs that restart a broker need it
        labs = tuple(lab for lab in LABS if not lab.needs_broker_node)
        print(f"labs that restart a broker are left out: {missing}")
    reports = runner.check(labs, broker, parallel=4)
    assert [(r.lab, r.variant) for r in reports] == [
        (lab.name, variant) for lab in labs for variant in ("sound", "broken")
    ]
    misbehaved = [report.as_json() for report in reports if not report.as_taught]
    assert not misbehaved, json.dumps(misbehaved, indent=2)


def shop_lab(tmp_path, amqp_url, *arguments):
    return subprocess.run(
        [sys.executable, "-m", "shop", "lab", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"AMQP_URL": amqp_url, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_shop_lab_run_json_prints_the_report_and_keeps_it_as_the_last_one(tmp_path, broker):
    done = shop_lab(tmp_path, broker.amqp_url, "run", "hello-queue", "--broken", "--json")
    assert done.returncode == 0, done.stderr  # the broken variant showed its failure
    report = json.loads(done.stdout)
    assert {"lab", "variant", "holds", "figures", "summary"} <= set(report)
    assert (report["lab"], report["variant"], report["holds"]) == ("hello-queue", "broken", False)
    assert report["figures"]["vanished"] > 0
    kept = json.loads((tmp_path / "var/labs/hello-queue-broken.json").read_text())
    assert kept == report


def test_shop_lab_run_of_an_unknown_lab_names_the_labs(tmp_path, broker):
    done = shop_lab(tmp_path, broker.amqp_url, "run", "no-such-lab")
    assert done.returncode == 2
    assert all(lab.name in done.stderr for lab in LABS)


def test_shop_lab_run_without_a_broker_says_so_in_one_line(tmp_path):
    done = shop_lab(tmp_path, "amqp://guest:guest@127.0.0.1:1/%2F", "run", "hello-queue")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not reachable" in done.stderr, done.stderr
