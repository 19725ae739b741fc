"""Where a consumer's time goes, for the consumers that missed their goal in (c).

The consumer runs again under cProfile (bench/pipeline/consumers.py), which inflates
Python code, so read the shares, not the absolute numbers. `print_stages` gives
microseconds per message in each step of the runner's loop (envelope, inbox, handler,
commit, ack, waiting: STAGE_LEGEND says what each holds); `print_layers` the own time by
layer (SQLAlchemy, sqlite3, pika, ...) and the hottest functions of the worst consumer.
CONSUMER_SUGGESTIONS says what to try.
"""

from __future__ import annotations

import pstats
from dataclasses import dataclass

from bench import parts
from bench.support import REPO


@dataclass
class Profile:
    consumer: parts.Consumer
    messages: int
    stats: pstats.Stats

    def entries(self) -> list[tuple[str, str, float, float, int]]:
        """(file, function, own seconds, cumulative seconds, calls) for every function."""
        return [
            (filename, function, own, cumulative, calls)
            for (filename, _line, function), (_cc, calls, own, cumulative, _callers) in (
                self.stats.stats.items()  # type: ignore[attr-defined]
            )
        ]

    def cumulative(self, file_suffix: str, function: str) -> float:
        return sum(
            cum
            for filename, name, _own, cum, _calls in self.entries()
            if filename.endswith(file_suffix) and name == function
        )

    def stages(self) -> dict[str, float]:
        """Seconds per step of the runner's loop (parts.RUNNER_STEPS says where each is)."""
        step = {name: self.cumulative(*where) for name, where in parts.RUNNER_STEPS.items()}
        handler = step["handler"]
        return {
            "envelope": step["envelope"],
            "inbox": step["inbox"],
            "handler": handler,
            "commit": step["transaction"] - step["inbox"] - handler,
            "ack": step["ack"],
            "waiting": step["consume"] - step["delivery"],
        }


STAGE_LEGEND = """\
    envelope: Envelope.from_delivery; inbox: first_deliveries, once per batch, with the
    transaction's start (pool checkout, BEGIN IMMEDIATE, one INSERT ... ON CONFLICT DO
    NOTHING RETURNING for the batch); handler: the service's handler; commit: the rest (a
    flush after each message, the batch's outbox INSERT, COMMIT); ack: basic_ack, once per
    batch (multiple=True); waiting: for the next batch. All of it per message."""


LAYERS = [  # (layer, a test on (file, function name)); the first that matches wins
    ("sqlite3 C calls (execute, commit)", lambda f, n: f == "~" and "sqlite3" in n),
    ("waiting for the broker (poll)", lambda f, n: f == "~" and "poll" in n),
    ("socket send/recv", lambda f, n: f == "~" and "socket" in n),
    ("SQLAlchemy (Python)", lambda f, n: "/sqlalchemy/" in f),
    ("pika (Python)", lambda f, n: "/pika/" in f),
    ("pydantic", lambda f, n: "pydantic" in f or "pydantic" in n),
    ("json", lambda f, n: "/json/" in f or "json" in n),
    ("logging", lambda f, n: "/logging/" in f),
    ("messaging/ (runner, inbox, outbox, envelope)", lambda f, n: "/messaging/" in f),
    ("service handlers", lambda f, n: "_service/" in f),
]


def layer_of(filename: str, function: str) -> str:
    for layer, matches in LAYERS:
        if matches(filename, function):
            return layer
    return "other (stdlib: uuid, datetime, threading, ...)"


def layers(profile: Profile) -> list[tuple[str, float]]:
    """Own time per layer, as fractions of all profiled time, biggest first."""
    totals: dict[str, float] = {}
    for filename, function, own, _cum, _calls in profile.entries():
        layer = layer_of(filename, function)
        totals[layer] = totals.get(layer, 0.0) + own
    whole = sum(totals.values()) or 1.0
    return sorted(((layer, own / whole) for layer, own in totals.items()), key=lambda x: -x[1])


def hot_functions(profile: Profile, count: int) -> list[tuple[str, float, int]]:
    """The `count` functions with the most own time: (name, fraction of all, calls)."""
    entries = profile.entries()
    whole = sum(entry[2] for entry in entries) or 1.0
    ranked = sorted(entries, key=lambda entry: -entry[2])[:count]
    return [
        (f"{function} ({'built-in' if filename == '~' else short_path(filename)})", own / whole, n)
        for filename, function, own, _cum, n in ranked
    ]


def short_path(filename: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def print_stages(profiles: list[Profile]) -> None:
    """One line per consumer: microseconds per message in each step of the runner."""
    names = list(profiles[0].stages())
    print(
        "\n  (c) where a ConsumerRunner's time goes, under cProfile (it inflates Python code), "
        "in us per message:"
    )
    print(f"    {'consumer':<22}" + "".join(f"{name:>10}" for name in names) + f"{'total':>8}")
    for profile in profiles:
        stages = profile.stages()
        cells = "".join(f"{stages[name] / profile.messages * 1e6:>10.0f}" for name in names)
        total = sum(stages.values()) / profile.messages * 1e6
        print(f"    {profile.consumer.name:<22}{cells}{total:>8.0f}")
    print(STAGE_LEGEND)


def print_layers(profile: Profile) -> None:
    print(f"\n  {profile.consumer.name} under cProfile, own time by layer:")
    for layer, share in layers(profile):
        if share >= 0.02:
            print(f"    {share * 100:5.1f} %  {layer}")
    print("    hottest functions (own time, calls):")
    for name, share, calls in hot_functions(profile, 6):
        print(f"    {share * 100:5.1f} %  {calls:>7}  {name}")


CONSUMER_SUGGESTIONS = """\
  (c) suggestions, from the profile: a batch (up to the prefetch) already shares one
      transaction, one inbox INSERT, one outbox INSERT, one COMMIT and one ack; what is left
      is per message: the envelope, the handler's statements and a flush after each.
      - a handler that still goes through the ORM (session.get, session.add, lazy loads)
        pays several times what a Core statement built once costs (see the saga, the read
        model and the inventory's order path);
      - a handler's write that nothing later in the batch reads can wait for the batch's one
        statement (messaging/batch_writes.py: the outbox rows, the SMS rows, the timeline);
      - past that, the cost is pika's and the broker's: a larger prefetch (a larger batch)
        shares the fixed part among more messages."""
