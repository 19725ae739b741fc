"""`shop chaos --seconds 35`: the whole shop under load and every kind of fault, on its own
throwaway RabbitMQ node (never the shared broker), ends with every invariant holding."""

import json
import subprocess
import sys

import pytest

from shop import broker_nodes
from shop.local_servers import Missing

FAULT_KINDS = {"kill", "broker", "poison", "duplicate"}


def test_a_short_chaos_run_on_sqlite_keeps_every_invariant():
    try:
        broker_nodes.find_bin_directory()
    except Missing as missing:
        pytest.skip(str(missing))
    run = subprocess.run(
        [sys.executable, "-m", "shop", "chaos", "--seconds", "35", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.stdout, run.stderr
    report = json.loads(run.stdout)
    assert {kind for kind, n in report["faults"].items() if n > 0} >= FAULT_KINDS
    failed = [check for check in report["checks"] if not check["holds"]]
    assert run.returncode == 0 and not failed, json.dumps(failed, indent=2)
    assert report["orders_accepted"] > 0
    assert report["settle_seconds"] is not None
