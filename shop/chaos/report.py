"""The chaos run's report: a table of the checks, the faults by kind, the orders and the
time the shop took to settle; or the same as one JSON object (`--json`).

Read it top down: a FAIL row names the invariant that broke and its first offenders; the
faults line says what was done to the shop (a `failed` count is a fault that could not be
injected, e.g. no process to kill at that instant); `settled in` is the time from the end
of the load until every order was decided, every outbox empty and every queue drained.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from shop.chaos.invariants import Check


@dataclass
class Outcome:
    database: str
    seconds: float
    checks: list[Check]
    faults: dict[str, int]
    faults_failed: dict[str, int]
    orders_accepted: int
    order_statuses: dict[str, int]
    answers: dict[str, int]
    settle_seconds: float | None  # None: it did not settle before the deadline
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return all(check.holds for check in self.checks)


def as_json(outcome: Outcome) -> str:
    return json.dumps({**asdict(outcome), "holds": outcome.holds}, indent=2)


def as_text(outcome: Outcome) -> str:
    statuses = Counter(outcome.order_statuses)
    settled = (
        f"{outcome.settle_seconds:.1f} s"
        if outcome.settle_seconds is not None
        else "did not settle before the deadline"
    )
    faults = ", ".join(f"{kind} {n}" for kind, n in sorted(outcome.faults.items())) or "none"
    failed = ", ".join(f"{kind} {n}" for kind, n in sorted(outcome.faults_failed.items()))
    width = max(len(check.name) for check in outcome.checks)
    lines = [
        f"chaos run: {outcome.seconds:.0f} s of load on {outcome.database}",
        f"  faults injected: {faults} (total {sum(outcome.faults.values())})"
        + (f"; failed to inject: {failed}" if failed else ""),
        f"  orders accepted (201): {outcome.orders_accepted}; in the database: "
        + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())),
        "  answers: " + ", ".join(f"{k}: {n}" for k, n in sorted(outcome.answers.items())),
        f"  settled in: {settled}",
        *(f"  note: {note}" for note in outcome.notes),
        "",
        f"  {'':4}  {'invariant':<{width}}  detail",
        *(
            f"  {'ok' if c.holds else 'FAIL':<4}  {c.name:<{width}}  {c.detail}"
            for c in outcome.checks
        ),
        "",
        "result: every invariant holds" if outcome.holds else "result: an invariant broke",
    ]
    return "\n".join(lines)
