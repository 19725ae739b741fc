"""`shop chaos`: the run, top to bottom.

1. The stage (stage.py): a throwaway broker node, database(s) and `shop up`.
2. The load (load.py) for `seconds`, while the faults (faults.py) strike; a progress line
   every few seconds on stderr.
3. Settle: wait (with a deadline) until every accepted order is decided, every outbox is
   empty and every work queue drained, twice in a row a moment apart.
4. Observe (observe.py), check (invariants.py), report (report.py).
Exit 0 when every invariant holds, 1 when one breaks, 2 when the run could not start
(something missing: one line says what and how to get it).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

from shop import broker_nodes, postgres_instances
from shop.chaos import observe
from shop.chaos.faults import Faults
from shop.chaos.invariants import check_all
from shop.chaos.load import Load, SetupRefused
from shop.chaos.report import Outcome, as_json, as_text
from shop.chaos.stage import Stage, stage
from shop.local_servers import Missing, wait_until

SETTLE_TIMEOUT = 240.0
PROGRESS_EVERY = 5.0
MAX_SECONDS = 3600


def main(seconds: float, database: str, json_output: bool, out: IO[str], err: IO[str]) -> int:
    if not 10 <= seconds <= MAX_SECONDS:
        err.write(f"shop chaos: --seconds must be between 10 and {MAX_SECONDS}\n")
        return 2
    try:
        broker_nodes.find_bin_directory()
        if database == "postgresql":
            postgres_instances.find_bin_directory()
    except Missing as missing:
        err.write(f"shop chaos: {missing}\n")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="shop-chaos-"))
    try:
        with stage(database, workdir) as scene:
            outcome = run(scene, seconds, database, err)
    except (Missing, SetupRefused, broker_nodes.NodeFailed, postgres_instances.InstanceFailed) as e:
        err.write(f"shop chaos: could not set up the run: {e} (files in {workdir})\n")
        return 2
    if outcome.holds:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        err.write(f"shop chaos: the shop's logs are kept in {workdir}/shop-up.log\n")
    return print_report(outcome, json_output, out)


def print_report(outcome: Outcome, json_output: bool, out: IO[str]) -> int:
    """Print the report; the exit code: 0 when every invariant holds, else 1."""
    out.write((as_json(outcome) if json_output else as_text(outcome)) + "\n")
    out.flush()
    return 0 if outcome.holds else 1


def run(scene: Stage, seconds: float, database: str, err: IO[str]) -> Outcome:
    load = Load(scene.base_url, scene.admin_token, seconds)
    load.set_up()
    faults = Faults(scene)
    faults.start()
    done = threading.Event()
    threading.Thread(target=_progress, args=(load, faults, done, err), daemon=True).start()
    try:
        load.run()
    finally:
        faults.finish()
        done.set()
    err.write("chaos: load stopped; waiting for the shop to settle\n")
    started = time.monotonic()
    try:
        wait_until(lambda: _settled(scene, load), SETTLE_TIMEOUT, "the shop to settle", pause=1)
        settle_seconds: float | None = time.monotonic() - started
    except TimeoutError:
        settle_seconds = None
    seen = observe.snapshot(scene.database_urls, scene.node.amqp_url)
    records = load.records
    return Outcome(
        database=database,
        seconds=seconds,
        checks=check_all(records, seen, dict(faults.poison)),
        faults=dict(faults.injected),
        faults_failed=dict(faults.failed),
        orders_accepted=len(records.orders),
        order_statuses=dict(Counter(seen.orders.values())),
        answers=dict(records.answers),
        settle_seconds=settle_seconds,
    )


def _settled(scene: Stage, load: Load) -> bool:
    """Quiet twice in a row, a second apart: a message in a consumer's hand is in no
    queue's count, and its effects appear a moment later."""
    return _quiet(scene, load) and not time.sleep(1) and _quiet(scene, load)


def _quiet(scene: Stage, load: Load) -> bool:
    accepted = [order.id for order in load.records.orders]
    try:
        return (
            time.time() > load.records.sale_ends_at
            and observe.pending_orders(scene.database_urls["ORDER_DATABASE_URL"], accepted) == 0
            and not any(observe.unsent(scene.database_urls).values())
            and not any(observe.queue_depths(scene.node.amqp_url).values())
        )
    except Exception:  # a database or the broker still recovering: not settled yet
        return False


def _progress(load: Load, faults: Faults, done: threading.Event, err: IO[str]) -> None:
    started = time.monotonic()
    while not done.wait(PROGRESS_EVERY):
        records = load.records
        with records.lock:
            requests, accepted = sum(records.answers.values()), len(records.orders)
        injected = ", ".join(f"{k} {n}" for k, n in sorted(faults.injected.items()))
        err.write(
            f"chaos: {time.monotonic() - started:5.0f} s  requests {requests}  "
            f"orders accepted {accepted}  faults: {injected or 'none yet'}\n"
        )
        err.flush()
