"""What the shop holds, read straight from its databases and the broker, as plain data.

The checks in invariants.py work on a `Snapshot` only, so they can be tried on hand-made
data (tests/unit/test_chaos_invariants.py). The queries are deliberately plain and use few
columns (e.g. SMS are counted per outcome event and status), so they keep working while
the services' tables grow.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text

from messaging.connection import close_quietly, open_connection
from messaging.pipeline import read_only_engine
from shop.catalog import CATALOG

# {a service's database variable: its outbox table}, from the catalog.
OUTBOXES = {
    service.settings.DATABASE_VARIABLE: service.outbox.__tablename__  # type: ignore[attr-defined]
    for service in CATALOG
}
WORK_QUEUES = CATALOG.topology().queues
OUTCOMES = ("order.confirmed", "order.rejected")


@dataclass
class Snapshot:
    orders: dict[str, str] = field(default_factory=dict)  # id: status
    order_lines: dict[str, dict[str, int]] = field(default_factory=dict)  # id: {sku: quantity}
    order_coupons: dict[str, str] = field(default_factory=dict)  # id: coupon code
    read_model_stock: dict[str, int] = field(default_factory=dict)  # products.available
    sales: dict[str, tuple[int, int]] = field(default_factory=dict)  # id: (quota, sold)
    tickets: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    # (sale id, status, phone, order id)
    outcome_events: Counter[str] = field(default_factory=Counter)  # order id: events
    inventory_stock: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)  # order id: RESERVED | REJECTED
    stock_history: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # sku: [(version, available)] from the inventory's stock_changed events
    coupons: dict[str, tuple[str, str | None]] = field(
        default_factory=dict
    )  # code: (status, order)
    outcome_sms: Counter[str] = field(default_factory=Counter)  # order id: SMS rows
    unsent: dict[str, int] = field(default_factory=dict)  # outbox table: rows not yet sent
    queue_depths: dict[str, int] = field(default_factory=dict)  # work queue: ready messages
    dead_letters: dict[str, dict[str, str]] = field(default_factory=dict)
    # work queue: {message id: message type} of its `<queue>.dead`


def rows(url: str, query: str) -> list:
    engine = read_only_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)))
    finally:
        engine.dispose()


def unsent(database_urls: dict[str, str]) -> dict[str, int]:
    """What still waits to leave the shop: each outbox's unsent rows, and the SMS the
    notification service has not handed to its gateway yet."""
    waiting = {
        table: rows(database_urls[variable], f"SELECT count(*) FROM {table} WHERE sent_at IS NULL")[
            0
        ][0]
        for variable, table in OUTBOXES.items()
    }
    waiting["sms_messages"] = rows(
        database_urls["NOTIFICATION_DATABASE_URL"],
        "SELECT count(*) FROM sms_messages WHERE status = 'PENDING'",
    )[0][0]
    return waiting


def pending_orders(order_url: str, ids: list[str]) -> int:
    """How many of these orders are not decided yet (missing ones count too)."""
    decided = {
        order_id
        for order_id, status in rows(order_url, "SELECT id, status FROM orders")
        if status in ("CONFIRMED", "REJECTED")
    }
    return sum(order_id not in decided for order_id in ids)


def queue_depths(amqp_url: str) -> dict[str, int]:
    connection = open_connection(amqp_url, "chaos: depths")
    try:
        channel = connection.channel()
        return {
            queue.name: channel.queue_declare(queue.name, passive=True).method.message_count
            for queue in WORK_QUEUES
        }
    finally:
        close_quietly(connection)


def dead_letters(amqp_url: str) -> dict[str, dict[str, str]]:
    """{message id: type} of every `<queue>.dead`, looked at without taking them (the
    channel closes unacked, so they return to their queue)."""
    connection = open_connection(amqp_url, "chaos: dead letters")
    found: dict[str, dict[str, str]] = {}
    try:
        for queue in WORK_QUEUES:
            channel = connection.channel()
            letters: dict[str, str] = {}
            while True:
                method, properties, _body = channel.basic_get(queue.dead_letter_queue)
                if method is None:
                    break
                letters[properties.message_id or "(no message id)"] = properties.type or "-"
            channel.close()
            found[queue.name] = letters
    finally:
        close_quietly(connection)
    return found


def snapshot(database_urls: dict[str, str], amqp_url: str) -> Snapshot:
    orders_url = database_urls["ORDER_DATABASE_URL"]
    inventory_url = database_urls["INVENTORY_DATABASE_URL"]
    seen = Snapshot()
    for order_id, status, coupon in rows(orders_url, "SELECT id, status, coupon_code FROM orders"):
        seen.orders[order_id] = status
        if coupon:
            seen.order_coupons[order_id] = coupon
    lines: dict[str, dict[str, int]] = defaultdict(dict)
    for order_id, sku, quantity in rows(
        orders_url, "SELECT order_id, sku, quantity FROM order_lines"
    ):
        lines[order_id][sku] = lines[order_id].get(sku, 0) + quantity
    seen.order_lines = dict(lines)
    seen.read_model_stock = dict(rows(orders_url, "SELECT sku, available FROM products"))
    seen.sales = {
        i: (q, s) for i, q, s in rows(orders_url, "SELECT id, quota, sold FROM flash_sales")
    }
    seen.tickets = [
        tuple(row)
        for row in rows(
            orders_url, "SELECT sale_id, status, customer_phone, order_id FROM flash_tickets"
        )
    ]
    outcomes = "', '".join(OUTCOMES)
    seen.outcome_events = Counter(
        correlation
        for (correlation,) in rows(
            orders_url,
            f"SELECT correlation_id FROM order_outbox WHERE event_type IN ('{outcomes}')",
        )
    )
    seen.inventory_stock = dict(rows(inventory_url, "SELECT sku, available FROM inventory_stock"))
    seen.decisions = dict(
        rows(inventory_url, "SELECT order_id, status FROM inventory_reservations")
    )
    history: dict[str, list[tuple[int, int]]] = defaultdict(list)
    query = "SELECT payload FROM inventory_outbox WHERE event_type = 'inventory.stock_changed'"
    for (payload,) in rows(inventory_url, query):
        change = json.loads(payload)
        history[change["sku"]].append((change["version"], change["available"]))
    seen.stock_history = {sku: sorted(changes) for sku, changes in history.items()}
    seen.coupons = {
        code: (status, order_id)
        for code, status, order_id in rows(
            database_urls["COUPON_DATABASE_URL"], "SELECT code, status, order_id FROM coupons"
        )
    }
    seen.outcome_sms = Counter(
        order_id
        for (order_id,) in rows(
            database_urls["NOTIFICATION_DATABASE_URL"],
            f"SELECT order_id FROM sms_messages WHERE event IN ('{outcomes}') AND status = 'SENT'",
        )
    )
    seen.unsent = unsent(database_urls)
    seen.queue_depths = queue_depths(amqp_url)
    seen.dead_letters = dead_letters(amqp_url)
    return seen
