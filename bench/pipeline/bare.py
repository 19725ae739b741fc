"""(a)'s baseline: a bare endpoint under the same gunicorn command line as the shop's web.

`bare_app()` validates the same JSON as POST /api/orders (order_service.commands.OrderIn)
and inserts one row into one SQLite table: no outbox, no broker, nothing else. gunicorn
serves it as `bench.pipeline.bare:bare_app()` with the shop's own options (2 workers x 8
threads), so the ratio pipeline rate / bare rate says what the pipeline's work costs on
top of what any such endpoint pays. `measure_bare` runs the rate search against it.
"""

from __future__ import annotations

import argparse
import os
import uuid
from contextlib import suppress
from pathlib import Path

from flask import Flask, jsonify, request
from pydantic import ValidationError
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert
from sqlalchemy.exc import OperationalError

from bench import parts
from bench.cpu import CpuMeter, watched_processes
from bench.pipeline.trials import Search, Trial, find_max_rate, http_problems, offer_orders
from bench.pipeline.waits import WaitSampler
from bench.support import HOST, free_port, running, server_env, wait_answers
from messaging.database import make_engine
from messaging.outbox import utcnow

BARE_APP = "bench.pipeline.bare:bare_app()"
BARE_DATABASE_VARIABLE = "BENCH_BARE_DATABASE_URL"

BARE_METADATA = MetaData()
BARE_ORDERS = Table(
    "bare_orders",
    BARE_METADATA,
    Column("id", String(36), primary_key=True),
    Column("customer_name", String(200)),
    Column("customer_phone", String(32)),
    Column("sku", String(64)),
    Column("quantity", Integer),
    Column("created_at", DateTime(timezone=True)),
)


def bare_app() -> Flask:
    """The baseline: POST /api/orders validates with OrderIn and inserts one row. That is all.

    Served by `gunicorn 'bench.pipeline.bare:bare_app()'`; the database is BENCH_BARE_DATABASE_URL
    (SQLite through messaging.database, as the shop's own databases).
    """
    url = os.environ.get(BARE_DATABASE_VARIABLE, "sqlite:///var/bench-bare.db")
    engine = make_engine(url)
    with suppress(OperationalError):  # two workers may both try; one wins
        BARE_METADATA.create_all(engine)
    app = Flask(__name__)

    @app.post("/api/orders")
    def place_order():  # type: ignore[no-untyped-def]
        try:
            order = parts.OrderIn.model_validate(request.get_json())
        except ValidationError as error:
            return jsonify(errors=error.errors(include_url=False)), 422
        row = {
            "id": str(uuid.uuid4()),
            "customer_name": order.customer.name,
            "customer_phone": order.customer.phone,
            "sku": order.items[0].sku,
            "quantity": order.items[0].quantity,
            "created_at": utcnow(),
        }
        with engine.begin() as connection:
            connection.execute(insert(BARE_ORDERS).values(row))
        return jsonify(id=row["id"]), 201

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(status="ok")

    return app


def bare_trial(port: int, pid: int, rate: float, duration: float, max_http_p99: float) -> Trial:
    processes = watched_processes(pid)
    meter = CpuMeter(processes)
    with WaitSampler(processes) as waits:
        load = offer_orders(port, rate, duration)
    problems = http_problems(load, max_http_p99)
    return Trial(rate, load, meter.read().percent(), waits.percent(), problems=problems)


def measure_bare(args: argparse.Namespace, folder: Path) -> Search:
    port = free_port()
    env = server_env(**{BARE_DATABASE_VARIABLE: f"sqlite:///{folder / 'bare.db'}"})
    BARE_METADATA.create_all(make_engine(env[BARE_DATABASE_VARIABLE]))
    argv = parts.web_argv(port, BARE_APP)
    with running(argv, folder, env, folder / "bare.log") as pid:
        wait_answers("the bare app", f"http://{HOST}:{port}/healthz")
        return find_max_rate(
            lambda rate: bare_trial(port, pid, rate, args.duration, args.max_http_p99),
            args.bare_start,
            args.refine_steps,
            "bare    ",
        )
