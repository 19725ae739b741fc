"""The bench's own endpoints, served by the shop's gunicorn command line as
`bench.flash_sale.apps:bench_app()`: the no-op yardstick and the tutorials' naive pattern.
`purchase_request` is the message the shop's admission gate publishes for a purchase.
"""

from __future__ import annotations

import secrets

import pika
from flask import Flask, Response, jsonify

from bench import parts
from messaging.envelope import Envelope

BENCH_APP = "bench.flash_sale.apps:bench_app()"


def bench_app() -> Flask:
    """Two endpoints beside the shop's, under the same gunicorn command line.

    POST /noop/flash-sales/<id>/purchases   parse the body as the shop does, answer 202.
    POST /naive/flash-sales/<id>/purchases  connect, count, publish, close (per request).
    The naive one reads AMQP_URL and FLASH_SALE_QUEUE_LIMIT; the bench declares the
    topology on that vhost before it sends any request there.
    """
    settings = parts.Settings.from_env()
    limit = settings.flash_sale_queue_limit
    app = Flask(__name__)
    app.json.sort_keys = False

    @app.errorhandler(parts.ApiProblem)
    def on_api_problem(error: parts.ApiProblem) -> Response:
        return parts.problem(error.status, error.title, error.detail, error.errors, error.headers)

    @app.post("/noop/flash-sales/<sale_id>/purchases")
    def noop(sale_id: str) -> tuple[Response, int]:
        parts.read_body(parts.PurchaseIn)
        ticket_id = secrets.token_hex(20)
        status_url = f"/noop/flash-sales/{sale_id}/tickets/{ticket_id}"
        return jsonify(ticket_id=ticket_id, status="QUEUED", status_url=status_url), 202

    @app.post("/naive/flash-sales/<sale_id>/purchases")
    def naive(sale_id: str) -> tuple[Response, int] | Response:
        command, _ = parts.read_body(parts.PurchaseIn)
        connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_url))
        try:
            channel = connection.channel()
            depth = channel.queue_declare(parts.FLASH_SALE_QUEUE, passive=True).method.message_count
            if depth >= limit:
                return parts.problem(
                    429,
                    "Too Many Requests",
                    "The sale is at capacity; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            ticket_id = secrets.token_hex(20)
            request = purchase_request(sale_id, ticket_id, command.customer.model_dump())
            channel.basic_publish(
                "", parts.FLASH_SALE_QUEUE, request.encoded_body(), request.properties()
            )
        finally:
            connection.close()
        status_url = f"/naive/flash-sales/{sale_id}/tickets/{ticket_id}"
        return jsonify(ticket_id=ticket_id, status="QUEUED", status_url=status_url), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app


def purchase_request(sale_id: str, ticket_id: str, customer: dict[str, object]) -> Envelope:
    """What the shop's gate publishes into flash-sale.requests."""
    return Envelope.new(
        parts.PURCHASE_REQUEST,
        {"ticket_id": ticket_id, "sale_id": sale_id, "customer": customer},
        correlation_id=ticket_id,
        app_id=parts.ORDER_APP_ID,
    )
