"""What `shop lab list|run|check|docs` print, and their exit codes (shop/cli.py parses).

`run` exits 0 when the variant behaved as the lab teaches (the sound one holds, the
broken one shows its failure), 1 when not, 2 when it could not run; `check` runs both
variants of every lab and exits 0 when all behave. Logs go to var/labs/, not the terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from shop.labs import LABS, docs, find, number, runner
from shop.labs.lab import Lab
from shop.labs.runner import Report
from shop.vhosts import Broker


def list_labs(out: IO[str]) -> int:
    width = max(len(lab.name) for lab in LABS)
    for lab in LABS:
        out.write(f"{lab.name:<{width}}  {lab.title}\n")
    return 0


def run_one(
    name: str,
    broken: bool,
    as_json: bool,
    broker: Callable[[], Broker],
    out: IO[str],
    err: IO[str],
) -> int:
    """`broker()` finds the broker (and its management API) once the lab is known."""
    lab = find(name)
    if lab is None:
        err.write(f"shop lab: no lab named {name!r}; the labs are: {names()}\n")
        return 2
    variant = "broken" if broken else "sound"
    with logs_to(runner.REPORTS / f"{lab.name}-{variant}.log") as log_file:
        report = runner.run_lab(lab, broken, broker())
    path = runner.save(report)
    if report.could_not_run:
        err.write(f"shop lab: {lab.name}: {report.error}\n")
    if as_json:
        out.write(json.dumps(report.as_json()) + "\n")
    elif not report.could_not_run:
        out.write(as_text(lab, report, path, log_file))
    return report.exit_code


def check_all(broker: Broker, parallel: int, out: IO[str]) -> int:
    started = time.monotonic()
    with logs_to(runner.REPORTS / "check.log") as log_file:
        reports = runner.check(LABS, broker, parallel)
    for report in reports:
        runner.save(report)
    out.write(as_table(reports))
    behaved = sum(report.as_taught for report in reports)
    out.write(
        f"\n{behaved} of {len(reports)} runs behaved as their lab teaches, "
        f"in {time.monotonic() - started:.0f} s (logs: {log_file})\n"
    )
    if behaved == len(reports):
        return 0
    return 2 if all(r.could_not_run for r in reports if not r.as_taught) else 1


def print_docs(out: IO[str]) -> int:
    out.write(docs.render())
    return 0


def names() -> str:
    return ", ".join(lab.name for lab in LABS)


def as_text(lab: Lab, report: Report, path: Path, log_file: Path) -> str:
    variant = lab.broken if report.variant == "broken" else lab.sound
    lines = [
        f"Lab {number(lab)}: {lab.title} ({report.variant} variant: {variant.label})",
        f"Question: {lab.question}",
        f"What it did ({variant.does}):",
        *(f"  - {step}" for step in report.did),
        f"What happened: {report.summary}",
        "  " + "  ".join(f"{key}={value}" for key, value in report.figures.items()),
        verdict(lab, report),
        f"Read: {lab.read}",
        f"(report: {path}; logs: {log_file}; {report.seconds:.1f} s)",
    ]
    return "\n".join(lines) + "\n"


def verdict(lab: Lab, report: Report) -> str:
    if report.error is not None:
        return f"NOT AS TAUGHT: the lab {report.error}"
    if report.as_taught and report.holds:
        return f"The guarantee held ({lab.guarantee}), as it must."
    if report.as_taught:
        return f"The guarantee did not hold ({lab.guarantee}): the failure this variant shows."
    if report.holds:
        return "NOT AS TAUGHT: the broken variant showed no failure this time."
    return f"NOT AS TAUGHT: the sound variant broke its guarantee ({lab.guarantee})."


def as_table(reports: list[Report]) -> str:
    width = max(len(report.lab) for report in reports)
    rows = [
        f"{'lab':<{width}}  variant  holds  expected  ok   seconds  summary",
    ]
    for report in reports:
        holds = "-" if report.holds is None else ("yes" if report.holds else "no")
        rows.append(
            f"{report.lab:<{width}}  {report.variant:<7}  {holds:<5}  "
            f"{'yes' if report.expected else 'no':<8}  {'ok' if report.as_taught else 'NO':<3}  "
            f"{report.seconds:>7.1f}  {report.summary}"
        )
    return "\n".join(rows) + "\n"


@contextlib.contextmanager
def logs_to(path: Path) -> Iterator[Path]:
    """Send every log record of the block to `path` (not the terminal)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    pika_logger = logging.getLogger("pika")
    pika_level = pika_logger.level
    pika_logger.setLevel(logging.WARNING)  # pika says every connect and close at INFO
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        pika_logger.setLevel(pika_level)
        handler.close()
