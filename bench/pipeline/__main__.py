"""`python -m bench.pipeline`: the options, and the order the measurements run in.
How to read the output: bench/pipeline/__init__.py."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bench.pipeline
from bench.pipeline.bare import measure_bare
from bench.pipeline.consumers import CONSUMERS, ConsumerResult, measure_consumer, profile_consumer
from bench.pipeline.orders import PipelineRun, measure_pipeline
from bench.pipeline.profile import CONSUMER_SUGGESTIONS, print_layers, print_stages
from bench.pipeline.report import (
    CONSUMER_GOAL,
    POSTGRES_SCALE,
    Measured,
    print_cpu,
    print_findings,
    print_notes,
    print_table,
)
from bench.support import CANNOT_MEASURE, fresh_postgres


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=bench.pipeline.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per trial (8)")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after a trial to drain (5)"
    )
    parser.add_argument("--pipeline-start", type=float, default=10.0, help="first rate (10/s)")
    parser.add_argument("--bare-start", type=float, default=100.0, help="first rate (100/s)")
    parser.add_argument("--refine-steps", type=int, default=2, help="bisection steps (2)")
    parser.add_argument(
        "--max-http-p99", type=float, default=0.5, help="HTTP p99 bound, seconds (0.5)"
    )
    parser.add_argument("--messages", type=int, default=5000, help="N per consumer (5000)")
    parser.add_argument(
        "--only",
        choices=["pipeline", "bare", "consumers", "postgres"],
        action="append",
        help="run only this part: pipeline ((a), (b) and idle on SQLite), bare, consumers "
        "((c)), postgres ((a) and idle on PostgreSQL, 1 and 2 replicas); repeatable",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="the idle CPU's window (10 s)"
    )
    parser.add_argument(
        "--profile-messages", type=int, default=500, help="N per profiled consumer (500)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip cProfile on a miss")
    return parser.parse_args(argv)


def run_http(args: argparse.Namespace, wanted: set[str], measured: Measured) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as name:
        folder = Path(name)
        if "pipeline" in wanted:
            print("(a) pipeline: `shop up`, doubling then bisecting the order rate ...", flush=True)
            (folder / "shop").mkdir()
            measured.pipeline = measure_pipeline(args, folder / "shop")
        if "postgres" in wanted:
            run_postgres(args, folder, measured)
        if "bare" in wanted:
            print("(a) bare endpoint, the same gunicorn command line ...", flush=True)
            (folder / "bare").mkdir()
            measured.bare = measure_bare(args, folder / "bare")


def run_postgres(args: argparse.Namespace, folder: Path, measured: Measured) -> None:
    """(a) and the idle CPU with every service on PostgreSQL, one replica, then two."""
    for replicas, up_args in (("1 replica", ()), ("2 replicas", ("--scale", POSTGRES_SCALE))):
        print(f"(a) pipeline on PostgreSQL, `shop up {' '.join(up_args)}` ...", flush=True)
        with fresh_postgres("bench_pipeline") as url:
            if url is None:
                measured.postgres_missing = "no PostgreSQL server answered"
                print(f"  skipped: {measured.postgres_missing}")
                return
            shop_folder = folder / f"postgres-{len(measured.postgres) + 1}"
            shop_folder.mkdir()
            measured.postgres[replicas] = measure_pipeline(
                args, shop_folder, False, up_args, url, f"postgres {replicas}"
            )


def run_consumers(args: argparse.Namespace) -> list[ConsumerResult]:
    print(f"(c) consumers: {args.messages} messages each, ConsumerRunner vs raw pika ...")
    results = []
    for consumer in CONSUMERS:
        result = measure_consumer(consumer, args.messages)
        print(
            f"  {consumer.name:<22} {result.rate:7.0f} msg/s, raw {result.raw_rate:7.0f} msg/s, "
            f"{result.ratio:.2f}, others {result.others:.0f} % CPU",
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    measured = Measured()
    wanted = set(args.only or ["pipeline", "bare", "consumers", "postgres"])
    try:
        if wanted & {"pipeline", "bare", "postgres"}:
            run_http(args, wanted, measured)
        if "consumers" in wanted:
            measured.consumers = run_consumers(args)
    except CANNOT_MEASURE as failure:
        print(f"FAIL: {failure}")
        return 1
    print_table(measured)
    print_notes(measured)
    searches: list[tuple[str, PipelineRun | None]] = [("(a) pipeline", measured.pipeline)]
    searches += [(f"(a) PostgreSQL, {name}", run) for name, run in measured.postgres.items()]
    for name, run in searches:
        print_cpu(name, run.search if run else None)
        print_findings(name, run.search if run else None)
    print_cpu("(a) bare endpoint", measured.bare)
    print_findings("(a) bare endpoint", measured.bare)
    missed = [result for result in measured.consumers if result.ratio < CONSUMER_GOAL]
    if missed and not args.no_profile:
        print(f"\n(c) missed: profiling {len(missed)} consumers, {args.profile_messages} messages")
        profiles = [profile_consumer(result.consumer, args.profile_messages) for result in missed]
        print_stages(profiles)
        worst = min(missed, key=lambda result: result.ratio)
        print_layers(next(profile for profile in profiles if profile.consumer is worst.consumer))
        print(CONSUMER_SUGGESTIONS)
    print(f"\n  the whole bench took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
