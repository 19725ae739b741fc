"""The flash-sale bench's three servers, and each row made ready to be measured.

`start_bench_app` (gunicorn serving apps.py: the no-op and naive rows), `start_shop` (`shop
up`: the sold-out row) and `start_open_web` (the shop's web app alone, nobody draining
flash-sale.requests: the open row) each start on a fresh vhost and stay up until the
bench's ExitStack closes. Then `sell_out` makes a sale of quota 1 and buys its unit;
`open_sale` makes a huge sale and fills its queue to the limit through the gate (pika tops
it up when the warm-up did not); `fill_for_naive` fills the naive row's queue the same way.
"""

from __future__ import annotations

import argparse
import secrets
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import pika.exceptions
import requests

from bench import parts
from bench.flash_sale.apps import BENCH_APP, purchase_request
from bench.flash_sale.generators import CUSTOMER_NAME, Generator
from bench.flash_sale.rows import Row
from bench.support import (
    HOST,
    BenchFailure,
    free_port,
    fresh_vhost,
    queue_depth,
    running,
    server_env,
    shop_up,
    wait_answers,
    wait_until,
)
from loadtest.client import REQUEST_TIMEOUT
from messaging.connection import open_connection

SETTLE_SECONDS = 30.0  # for the first sale to be decided, the queue to fill, ...
OPEN_SALE_QUOTA = 1_000_000  # the most FlashSaleIn takes


def admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(url: str, body: dict[str, object], token: str | None = None) -> dict:
    response = requests.post(
        url, json=body, headers=admin(token) if token else {}, timeout=REQUEST_TIMEOUT
    )
    if response.status_code not in (201, 202):
        raise BenchFailure(f"POST {url}: {response.status_code} {response.text[:300]}")
    return response.json()


def sale_queue_depth(amqp_url: str) -> int:
    """How many purchase requests flash-sale.requests holds, on a connection of its own."""
    with open_connection(amqp_url, "bench flash-sale: depth") as connection:
        return queue_depth(connection.channel(), parts.FLASH_SALE_QUEUE)


def declare(amqp_url: str, limit: int) -> None:
    with open_connection(amqp_url, "bench flash-sale: topology") as connection:
        parts.declare_shop_topology(connection.channel(), limit)


def depth_at_limit(amqp_url: str, limit: int) -> int:
    """The queue's depth once it has reached `limit`. A quorum queue's reject-publish may
    let a few concurrent publishes past the limit, so the depth may be a little above it."""
    if wait_until(lambda: sale_queue_depth(amqp_url) >= limit, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"flash-sale.requests did not reach its limit {limit}")
    return sale_queue_depth(amqp_url)


def fill_queue(amqp_url: str, limit: int, sale_id: str) -> int:
    """Top flash-sale.requests up to `limit` with pika; return how many it took."""
    with open_connection(amqp_url, "bench flash-sale: fill") as connection:
        channel = connection.channel()
        depth = queue_depth(channel, parts.FLASH_SALE_QUEUE)
        missing = max(0, limit - depth)
        channel.confirm_delivery()
        for number in range(missing):
            customer = {"name": CUSTOMER_NAME, "phone": f"+4930{number:09d}"}
            request = purchase_request(sale_id, secrets.token_hex(20), customer)
            with suppress(pika.exceptions.NackError):  # reject-publish: the queue is full
                channel.basic_publish(
                    "", parts.FLASH_SALE_QUEUE, request.encoded_body(), request.properties()
                )
        return missing


@dataclass
class Context:
    args: argparse.Namespace
    folder: Path
    generator: Generator
    stack: ExitStack


def start_bench_app(context: Context) -> tuple[Row, Row, str]:
    """gunicorn serving bench_app(): the no-op and the naive rows."""
    limit = context.args.queue_limit
    amqp_url = context.stack.enter_context(fresh_vhost("flash-sale-bench-app"))
    declare(amqp_url, limit)
    env = server_env(AMQP_URL=amqp_url, FLASH_SALE_QUEUE_LIMIT=str(limit))
    port = free_port()
    log = context.folder / "bench-app.log"
    pid = context.stack.enter_context(
        running(parts.web_argv(port, BENCH_APP), context.folder, env, log)
    )
    noop = Row("noop", "no-op endpoint", port, "/noop/flash-sales/s1/purchases", pid)
    naive = Row("naive", "naive: connect+count", port, "/naive/flash-sales/s1/purchases", pid)
    return noop, naive, amqp_url


def start_shop(context: Context) -> tuple[Row, str, str]:
    """`shop up` in its own folder on its own vhost."""
    folder = context.folder / "shop"
    folder.mkdir()
    limit = str(context.args.queue_limit)
    shop = context.stack.enter_context(
        shop_up(folder, "flash-sale-shop", wait=False, FLASH_SALE_QUEUE_LIMIT=limit)
    )
    row = Row("sold_out", "sold out (the shop)", shop.port, "", shop.pid)
    row.notes.append(
        "`shop up` as `make run` starts it, without --access-log, so no access-log line goes "
        "through its supervisor (the 'supervisor' CPU column); 'services' are the order, "
        "inventory, coupon and notification processes"
    )
    return row, shop.amqp_url, shop.token


def start_open_web(context: Context) -> tuple[Row, str, str]:
    """The shop's web app under gunicorn, alone: no order process drains the queue."""
    folder = context.folder / "open"
    folder.mkdir()
    database_url = f"sqlite:///{folder / 'orders.db'}"
    parts.migrate(parts.ORDER_SERVICE, database_url)
    amqp_url = context.stack.enter_context(fresh_vhost("flash-sale-open"))
    token = secrets.token_urlsafe(16)
    env = server_env(
        AMQP_URL=amqp_url,
        ORDER_DATABASE_URL=database_url,
        SHOP_ADMIN_TOKEN=token,
        FLASH_SALE_QUEUE_LIMIT=str(context.args.queue_limit),
    )
    port = free_port()
    pid = context.stack.enter_context(
        running(parts.web_argv(port), folder, env, folder / "web.log")
    )
    return Row("open", "open, queue at limit", port, "", pid), amqp_url, token


def sell_out(context: Context, row: Row, token: str) -> str:
    """A product, a sale of quota 1, one purchase; wait until the sale says sold_out."""
    base = f"http://{HOST}:{row.port}"
    wait_answers("`shop up`", f"{base}/healthz")
    sku = "BENCH-FLASH-1"
    product = {"sku": sku, "name": "Flash kettle", "price_cents": 2500, "stock": 10}
    post(f"{base}/api/products", product, token)
    sale = post(f"{base}/api/flash-sales", {"sku": sku, "price_cents": 999, "quota": 1}, token)
    sale_url = f"{base}/api/flash-sales/{sale['id']}"

    def opened() -> bool:  # once the inventory holds its unit
        return requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] == "open"

    if wait_until(opened, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"the sale did not open within {SETTLE_SECONDS:.0f} s")
    post(f"{sale_url}/purchases", {"customer": {"name": "First", "phone": "+4917012345"}})

    def sold_out() -> bool:
        return requests.get(sale_url, timeout=REQUEST_TIMEOUT).json()["status"] == "sold_out"

    if wait_until(sold_out, SETTLE_SECONDS, pause=0.1) is None:
        raise BenchFailure(f"the sale was not sold out within {SETTLE_SECONDS:.0f} s")
    row.path = f"/api/flash-sales/{sale['id']}/purchases"
    if context.args.warmup > 0:
        context.generator.run(row.port, row.path, context.args.warmup)
    return sale_url


def open_sale(context: Context, row: Row, amqp_url: str, token: str) -> None:
    """A sale with a huge quota; the warm-up's admissions fill the queue (pika tops it up)."""
    limit = context.args.queue_limit
    base = f"http://{HOST}:{row.port}"
    wait_answers("the web app", f"{base}/healthz")
    sku = "BENCH-FLASH-2"
    product = {"sku": sku, "name": "Flash toaster", "price_cents": 3000}
    post(f"{base}/api/products", {**product, "stock": OPEN_SALE_QUOTA}, token)
    sale = post(
        f"{base}/api/flash-sales",
        {"sku": sku, "price_cents": 1500, "quota": OPEN_SALE_QUOTA},
        token,
    )
    parts.hold_sale_units(context.folder / "open" / "orders.db", sale["id"])
    row.path = f"/api/flash-sales/{sale['id']}/purchases"
    warmup = context.generator.run(row.port, row.path, max(1.0, context.args.warmup))
    admitted = warmup.statuses.get(202, 0)
    topped_up = 0
    if wait_until(lambda: sale_queue_depth(amqp_url) >= limit, 2.0, pause=0.1) is None:
        topped_up = fill_queue(amqp_url, limit, sale["id"])
    depth = depth_at_limit(amqp_url, limit)
    row.notes.append(
        f"warm-up: {admitted} admitted (202) through the gate in {warmup.seconds:.1f} s, "
        f"{topped_up} topped up with pika; measured with the queue at {depth} "
        f"(limit {limit}), nobody draining"
    )


def fill_for_naive(context: Context, row: Row, amqp_url: str) -> None:
    limit = context.args.queue_limit
    wait_answers("the bench app", f"http://{HOST}:{row.port}/healthz")
    warmup = context.generator.run(row.port, row.path, context.args.warmup)
    topped_up = fill_queue(amqp_url, limit, "s1")
    depth = depth_at_limit(amqp_url, limit)
    row.notes.append(
        f"warm-up: {warmup.statuses.get(202, 0)} published through the endpoint in "
        f"{warmup.seconds:.1f} s, {topped_up} topped up with pika; measured with the queue "
        f"at {depth} (limit {limit})"
    )
