"""The operations routes: `GET /api/pipeline` (the dashboard's JSON), `GET /dashboard`
(the pipeline, live, and the topology as a picture) and the dashboard's replay button.

They read the same numbers as `shop status` and /metrics (shop/ops/readings.py: the
broker's queues, each service's outbox and inbox, each service's probes). A broker that
cannot be reached makes /api/pipeline answer 503; a database that is down is null. A
figure the shop cannot know says why in `notes` (unacked needs the management API), and
each queue names the lab (`shop lab run NAME`, the /labs page) that teaches its pattern.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template
from pydantic import BaseModel

from messaging import dead_letters, pipeline
from messaging.connection import (
    CONNECTION_ERRORS,
    BrokerUnavailable,
    close_quietly,
    open_connection,
)
from messaging.management import ENABLE_MANAGEMENT
from messaging.publisher import PublishFailed
from messaging.topology import EVENTS_EXCHANGE, Topology
from order_service.web.auth import admin_only
from order_service.web.openapi import Answer, documented
from order_service.web.problems import problem, request_id_of_this_request
from shop.ops.readings import PipelineReader

log = logging.getLogger(__name__)

blueprint = Blueprint(
    "ops",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ops-static",
)
EXTENSION = "shop_ops"


# The lab (`shop lab run NAME`, /labs#NAME) that teaches what each queue does; every
# dead-letter queue is the poison lab's. tests/unit/test_first_minutes.py checks that every
# queue of the catalog has one.
QUEUE_LABS = {
    "inventory.orders": "inbox",  # a redelivered order.created reserves nothing twice
    "orders.inventory": "saga",  # the inventory's answer decides the order
    "orders.read-model": "topics",  # bound with coupon.# and notification.#
    "coupons.orders": "saga",  # a rejection releases the coupon: the compensation
    "notifications.sms": "inbox",  # one SMS per event, however often it arrives
    "coupons.rpc": "rpc",
    "flash-sale.requests": "peak-shaving",
}
DEAD_LETTER_LAB = "poison"


def lab_of(queue: str, dead: bool = False) -> str | None:
    return DEAD_LETTER_LAB if dead else QUEUE_LABS.get(queue)


class QueueOut(BaseModel):
    name: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    dead: bool
    redelivered: int | None = None
    lab: str | None = None  # the lab about this queue's pattern: /labs#NAME


class PipelineOut(BaseModel):
    queues: list[QueueOut]
    outbox: dict[str, int | None]
    handled: dict[str, dict[str, int] | None]
    flash_sale: dict[str, Any] | None = None
    sms: dict[str, int] | None = None
    # Whether the figures came from the management API (false: over AMQP, so unacked is
    # null); null when no queue could be read at all.
    management: bool | None = None
    notes: list[str] = []  # why a figure is missing, in a sentence each


class Replayed(BaseModel):
    queue: str
    moved: int


def reader() -> PipelineReader:
    return current_app.extensions[EXTENSION]


@blueprint.get("/api/pipeline")
@documented(
    "Every queue, its dead letters, every outbox backlog, each service's own figures.",
    Answer(200, "What the pipeline holds now.", PipelineOut),
    tag="operations",
)
def pipeline_status() -> Response:
    try:
        queues = reader().queues()
    except BrokerUnavailable as error:
        log.warning(
            "GET /api/pipeline: %s", error, extra={"correlation_id": request_id_of_this_request()}
        )
        return problem(
            503, "Service Unavailable", "RabbitMQ cannot be reached; queue depths are unknown."
        )
    management = read_through_management(queues)
    return jsonify(
        queues=[{**queue.as_json(), "lab": lab_of(queue.name, queue.dead)} for queue in queues],
        management=management,
        notes=notes_on(management),
        outbox=reader().outbox_backlogs(),
        handled=reader().handled_messages(),  # the dashboard's rates
        **reader().probes(),  # flash_sale, sms: each service's own figures
    )


def read_through_management(queues: list[pipeline.QueueStatus]) -> bool | None:
    """True when the management API gave the figures. Without it (messaging/pipeline.py
    reads over AMQP instead) every queue that exists has `ready` but a null `unacked`."""
    if any(queue.unacked is not None for queue in queues):
        return True
    if any(queue.ready is not None for queue in queues):
        return False
    return None  # no queue exists yet: nothing to say


def notes_on(management: bool | None) -> list[str]:
    if management is not False:
        return []
    settings = reader().settings
    where = pipeline.management_url(settings.monitoring_url, settings.rabbitmq_management_url)
    return [
        f"unacked needs the management plugin (no figures from the management API at "
        f"{where}): {ENABLE_MANAGEMENT}, or set RABBITMQ_MANAGEMENT_URL to where it runs"
    ]


@blueprint.post("/api/dead-letters/<queue>/replay")
@documented(
    "Move a work queue's dead letters back to it (admin): `shop dlq replay QUEUE`.",
    Answer(200, "How many moved.", Replayed),
    Answer(404, "Not a work queue."),
    tag="operations",
)
@admin_only
def replay_dead_letters(queue: str) -> Response:
    topology = reader().topology
    try:
        dead_letters.dead_letter_queue(topology, queue)
    except dead_letters.UnknownQueue as error:
        return problem(404, "Not found", str(error))
    try:  # as AMQP_URL's user, an operator: no service's own user may read the dead letters
        connection = open_connection(reader().settings.amqp_url, "dashboard replay", timeout=3)
    except BrokerUnavailable as error:
        return problem(503, "Service Unavailable", str(error))
    try:
        moved = dead_letters.replay_dead_letters(connection, connection.channel(), topology, queue)
    except (*CONNECTION_ERRORS, PublishFailed) as error:
        return problem(503, "Service Unavailable", f"The replay stopped: {error}.")
    finally:
        close_quietly(connection)
    log.info("replayed %d dead letters into %s", moved, queue)
    return jsonify(queue=queue, moved=moved)


@blueprint.get("/dashboard")
def dashboard() -> str:
    return render_template("dashboard.html", picture=topology_picture(reader().topology))


def topology_picture(topology: Topology) -> dict[str, Any]:
    """Boxes and arrows for the dashboard's SVG: publishers -> exchanges -> queues -> owners."""
    row, top = 62, 40
    queues = [
        {
            "name": q.name,
            "bindings": list(q.bindings) or ["(default exchange)"],
            "owner": f"{q.owner}_service",
            "y": top + i * row,
        }
        for i, q in enumerate(topology.queues)
    ]
    owners = sorted({q["owner"] for q in queues})
    middle = top + (len(queues) - 1) * row / 2
    return {
        "height": top * 2 + (len(queues) - 1) * row,
        "exchange": {"name": EVENTS_EXCHANGE, "y": middle - 40},
        "default": {"name": "default exchange", "y": middle + 60},
        "publishers": [{"name": name, "y": middle - 120 + i * 60} for i, name in enumerate(owners)],
        "queues": queues,
        "owners": {name: top + i * (row * 1.7) for i, name in enumerate(owners)},
        "broadcast": "flash_sale.#",
    }
