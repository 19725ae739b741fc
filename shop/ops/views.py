"""The operations routes: `GET /api/pipeline` (the dashboard's JSON), `GET /dashboard`
(the pipeline, live, and the topology as a picture) and the dashboard's replay button.

They read the same numbers as `shop status` and /metrics (shop/ops/readings.py: the
broker's queues, each service's outbox and inbox, each service's probes). A broker that
cannot be reached makes /api/pipeline answer 503; a database that is down is null.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template
from pydantic import BaseModel

from messaging import dead_letters
from messaging.connection import (
    CONNECTION_ERRORS,
    BrokerUnavailable,
    close_quietly,
    open_connection,
)
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


class QueueOut(BaseModel):
    name: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    dead: bool
    redelivered: int | None = None


class PipelineOut(BaseModel):
    queues: list[QueueOut]
    outbox: dict[str, int | None]
    handled: dict[str, dict[str, int] | None]
    flash_sale: dict[str, Any] | None = None
    sms: dict[str, int] | None = None


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
    return jsonify(
        queues=[queue.as_json() for queue in queues],
        outbox=reader().outbox_backlogs(),
        handled=reader().handled_messages(),  # the dashboard's rates
        **reader().probes(),  # flash_sale, sms: each service's own figures
    )


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
    try:
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
