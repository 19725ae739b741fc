"""`python -m bench.flash_sale`: the options, and the order it all runs in: start the three
servers, prepare each row, measure the rounds, print the report. How to read the output:
bench/flash_sale/__init__.py."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests

import bench.flash_sale
from bench import parts
from bench.cpu import watched_processes
from bench.flash_sale.drain import measure_drains, print_drains
from bench.flash_sale.generators import pick_generator
from bench.flash_sale.report import print_generator, print_goals, print_table
from bench.flash_sale.rows import Row, measure_round
from bench.flash_sale.servers import (
    Context,
    fill_for_naive,
    open_sale,
    sale_queue_depth,
    sell_out,
    start_bench_app,
    start_open_web,
    start_shop,
)
from bench.support import CANNOT_MEASURE, HOST, print_log_tails, wait_answers
from loadtest.client import REQUEST_TIMEOUT


def gunicorn_flags() -> str:
    """'--workers 2 --worker-class gthread --threads 8', off the shop's web command line."""
    return " ".join(
        f"{flag} {parts.web_option(flag)}" for flag in ("--workers", "--worker-class", "--threads")
    )


def run(context: Context) -> list[Row]:
    args = context.args
    generator = context.generator
    seconds = generator.slice_seconds(args.duration / args.rounds)
    print(
        f"gunicorn as the shop's web process ({gunicorn_flags()}); generator: "
        f"{generator.name}, {args.connections} connections; {args.rounds} rounds of "
        f"{seconds:g} s per row after {args.warmup:g} s of warm-up; "
        f"FLASH_SALE_QUEUE_LIMIT={args.queue_limit}",
        flush=True,
    )
    print("starting gunicorn (bench app), `shop up`, gunicorn (the shop's web app) ...")
    noop, naive, bench_amqp = start_bench_app(context)
    sold_out, _, shop_token = start_shop(context)
    open_row, open_amqp, open_token = start_open_web(context)
    rows = [noop, naive, sold_out, open_row]

    print("preparing: the no-op warm-up; the naive queue filled ...", flush=True)
    wait_answers("the bench app", f"http://{HOST}:{noop.port}/healthz")
    if args.warmup > 0:
        generator.run(noop.port, noop.path, args.warmup)
    fill_for_naive(context, naive, bench_amqp)
    print("preparing: a sale sold out in the shop ...", flush=True)
    sale_url = sell_out(context, sold_out, shop_token)
    print("preparing: an open sale, its queue filled ...", flush=True)
    open_sale(context, open_row, open_amqp, open_token)
    for row in rows:
        row.processes = watched_processes(row.server_pid)

    for number in range(args.rounds):
        order = rows[number % len(rows) :] + rows[: number % len(rows)]
        measure_round(generator, order, seconds)
        rates = " | ".join(f"{row.name} {row.round_rates[-1]:,.0f}" for row in rows)
        print(f"round {number + 1}/{args.rounds} (req/s): {rates}", flush=True)

    if sale_queue_depth(open_amqp) < args.queue_limit:
        open_row.notes.append("the queue fell below its limit during the run: drained?")
    if requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] != "sold_out":
        sold_out.notes.append("the sale is no longer sold out after the run!")
    print("stopping the servers ...", flush=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flash_sale",
        description=bench.flash_sale.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=9.0, help="seconds of load per row (default 9)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds the duration is split into (default 3)"
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections (default 32)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads, at most 9 (default 1)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of warm-up per row (default 1)"
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=parts.FLASH_SALE_QUEUE_LIMIT,
        help="FLASH_SALE_QUEUE_LIMIT for every row (default: the shop's default)",
    )
    parser.add_argument(
        "--drain-rounds",
        type=int,
        default=3,
        help="rounds of the ticket worker's drain per row, the median counts (default 3; 0 skips)",
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto (default): wrk when installed, else the Python generator",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.connections < 1 or args.warmup < 0:
        parser.error("--rounds, --duration and --connections must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        generator = pick_generator(args.generator, args.connections, args.threads)
    except CANNOT_MEASURE as failure:
        print(f"FAIL: {failure}")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-flash-sale-") as folder:
        try:
            with ExitStack() as stack:
                rows = run(Context(args, Path(folder), generator, stack))
        except CANNOT_MEASURE as failure:
            print(f"FAIL: {failure}")
            print_log_tails(Path(folder))
            return 1
    print_table(rows)
    print_generator(generator, rows[0])
    print_goals(rows)
    if args.drain_rounds > 0:
        print(f"\nthe ticket worker, from a queue of {args.queue_limit} tickets ...", flush=True)
        try:
            print_drains(measure_drains(args.queue_limit, args.drain_rounds))
        except CANNOT_MEASURE as failure:
            print(f"FAIL: {failure}")
            return 1
    print(f"\n(the whole bench took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
