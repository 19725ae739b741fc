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
from bench.pipeline.orders import measure_pipeline
from bench.pipeline.profile import CONSUMER_SUGGESTIONS, print_layers, print_stages
from bench.pipeline.report import (
    CONSUMER_GOAL,
    print_cpu,
    print_findings,
    print_notes,
    print_table,
)
from bench.pipeline.trials import Search
from bench.support import CANNOT_MEASURE


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
    parser.add_argument("--messages", type=int, default=2000, help="N per consumer (2000)")
    parser.add_argument(
        "--only",
        choices=["pipeline", "bare", "consumers"],
        action="append",
        help="run only this part: pipeline ((a) and (b)), bare, consumers ((c)); repeatable",
    )
    parser.add_argument(
        "--profile-messages", type=int, default=500, help="N per profiled consumer (500)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip cProfile on a miss")
    return parser.parse_args(argv)


def run_http(args: argparse.Namespace, wanted: set[str]) -> tuple[Search | None, ...]:
    pipeline = latency = bare = None
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as name:
        folder = Path(name)
        if "pipeline" in wanted:
            print("(a) pipeline: `shop up`, doubling then bisecting the order rate ...", flush=True)
            (folder / "shop").mkdir()
            pipeline, latency = measure_pipeline(args, folder / "shop")
        if "bare" in wanted:
            print("(a) bare endpoint, the same gunicorn command line ...", flush=True)
            (folder / "bare").mkdir()
            bare = measure_bare(args, folder / "bare")
    return pipeline, bare, latency


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
    pipeline = bare = latency = None
    consumers: list[ConsumerResult] = []
    wanted = set(args.only or ["pipeline", "bare", "consumers"])
    try:
        if wanted & {"pipeline", "bare"}:
            pipeline, bare, latency = run_http(args, wanted)
        if "consumers" in wanted:
            consumers = run_consumers(args)
    except CANNOT_MEASURE as failure:
        print(f"FAIL: {failure}")
        return 1
    print_table(pipeline, bare, latency, consumers)
    print_notes(pipeline, bare, latency, consumers)
    print_cpu("(a) pipeline", pipeline)
    print_findings("(a) pipeline", pipeline)
    print_cpu("(a) bare endpoint", bare)
    print_findings("(a) bare endpoint", bare)
    missed = [result for result in consumers if result.ratio < CONSUMER_GOAL]
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
