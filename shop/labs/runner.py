"""Running labs: one variant of one lab, or every lab and both variants at once.

Each run gets a fresh vhost on the broker (shop/vhosts.py), or its own throwaway broker
node when the lab restarts a broker (shop/broker_nodes.py), and a scratch directory for
its databases; both are gone afterwards, so a shop running on the same broker never sees
a thing. `save()` writes a report to var/labs/NAME-VARIANT.json: the last report of that
lab and variant, for whatever wants to show it.

A variant behaves as the lab teaches when the sound one holds its guarantee and the
broken one does not; a lab that could not run at all (no broker, no rabbitmq-server)
says why in one line.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from messaging.connection import BrokerUnavailable, close_quietly, open_connection
from shop import broker_nodes
from shop.labs.lab import CannotRun, Figures, Lab, Run
from shop.local_servers import Missing
from shop.vhosts import Broker, VhostError

log = logging.getLogger(__name__)

REPORTS = Path("var/labs")
COULD_NOT_RUN = (CannotRun, BrokerUnavailable, VhostError, Missing, broker_nodes.NodeFailed)

# rabbitmqctl vhosts (no management API) are made by one helper that is not thread-safe.
_vhosts = threading.Lock()


@dataclass
class Report:
    lab: str
    variant: str  # "sound" or "broken"
    holds: bool | None  # did the guarantee hold? None: the lab did not get that far
    figures: Figures
    summary: str
    did: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None  # why it could not run, or how it crashed
    could_not_run: bool = False
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def expected(self) -> bool:
        return self.variant == "sound"

    @property
    def as_taught(self) -> bool:
        return self.error is None and self.holds == self.expected

    @property
    def exit_code(self) -> int:
        """0: behaved as the lab teaches; 1: did not (or crashed); 2: could not run."""
        if self.could_not_run:
            return 2
        return 0 if self.as_taught else 1

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "expected": self.expected, "as_taught": self.as_taught}


def run_lab(lab: Lab, broken: bool, broker: Broker) -> Report:
    """Run one variant of `lab` in its own vhost (or broker node); never raises for a lab
    that could not run or crashed: the report says so."""
    variant = "broken" if broken else "sound"
    started = time.monotonic()
    run: Run | None = None
    try:
        with tempfile.TemporaryDirectory(prefix=f"shop-lab-{lab.name}-") as scratch:
            if lab.needs_broker_node:
                node = broker_nodes.start_node(f"lab-{lab.name}")
                try:
                    run = Run(broken, node.amqp_url, Path(scratch), node)
                    figures = measure(lab, run)
                finally:
                    broker_nodes.stop_node(node)
            else:
                vhost = _create_vhost(broker, lab.name)
                try:
                    run = Run(broken, broker.url_for(vhost), Path(scratch))
                    figures = measure(lab, run)
                finally:
                    with _vhosts:
                        broker.delete_vhost(vhost)
    except COULD_NOT_RUN as error:
        why = f"could not run: {one_line(error)}"
        return _failed(lab, variant, run, started, why, could_not_run=True)
    except Exception as error:  # a bug in the lab, or the broker failed it halfway
        log.exception("lab %s (%s) crashed", lab.name, variant)
        why = f"crashed: {type(error).__name__}: {one_line(error)}"
        return _failed(lab, variant, run, started, why)
    return Report(
        lab=lab.name,
        variant=variant,
        holds=bool(lab.holds(figures)),
        figures=figures,
        summary=lab.summary(figures, broken),
        did=run.did,
        seconds=round(time.monotonic() - started, 1),
    )


def measure(lab: Lab, run: Run) -> Figures:
    assert lab.measure_figures is not None, f"lab {lab.name} has no @LAB.measure function"
    return lab.measure_figures(run)


def check(labs: Sequence[Lab], broker: Broker, parallel: int = 4) -> list[Report]:
    """Both variants of every lab, `parallel` runs at a time (each in its own vhost);
    the slow ones (their own broker node) start first. Reports in the labs' order."""
    runs = [(lab, broken) for lab in labs for broken in (False, True)]
    slow_first = sorted(range(len(runs)), key=lambda i: not runs[i][0].needs_broker_node)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="lab") as pool:
        futures = {i: pool.submit(run_lab, *runs[i], broker) for i in slow_first}
        return [futures[i].result() for i in range(len(runs))]


def probe(amqp_url: str) -> None:
    """CannotRun, in one line, when no broker answers at `amqp_url`."""
    try:
        close_quietly(open_connection(amqp_url, "shop lab: probe", timeout=3))
    except BrokerUnavailable as error:
        raise CannotRun(
            f"{error}: start one (`docker compose up -d rabbitmq`, or the distribution's "
            "rabbitmq-server) or set AMQP_URL"
        ) from None


def save(report: Report, directory: Path = REPORTS) -> Path:
    """Write the report as the last one of its lab and variant."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{report.lab}-{report.variant}.json"
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return path


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _create_vhost(broker: Broker, lab_name: str) -> str:
    probe(broker.amqp_url)
    with _vhosts:
        return broker.create_vhost(f"lab-{lab_name}")


def _failed(
    lab: Lab, variant: str, run: Run | None, started: float, error: str, could_not_run=False
) -> Report:
    return Report(
        lab=lab.name,
        variant=variant,
        holds=None,
        figures={},
        summary=error,
        did=run.did if run else [],
        seconds=round(time.monotonic() - started, 1),
        error=error,
        could_not_run=could_not_run,
    )
