"""The flash-sale routes of CONTRACT.md: thin, the rules are in flash_sale.py and the gate
in admission.py."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from messaging.outbox import utcnow
from order_service import flash_sale
from order_service.api import admin_only, read_body, web
from order_service.flash_sale import FlashSaleIn, PurchaseIn
from order_service.problems import problem

blueprint = Blueprint("flash_sales", __name__)

TITLES = {
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@blueprint.post("/api/flash-sales")
@admin_only
def create_sale() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(FlashSaleIn)
    with web().sessions.begin() as session:
        sale = flash_sale.create_sale(session, command)
        view = flash_sale.sale_view(sale, web().settings.flash_sale_queue_limit, utcnow())
    return jsonify(view), 201, {"Location": f"/api/flash-sales/{sale.id}"}


@blueprint.get("/api/flash-sales/<sale_id>")
def get_sale(sale_id: str) -> Response:
    with web().read_sessions() as session:
        sale = flash_sale.get_sale(session, sale_id)
        return jsonify(flash_sale.sale_view(sale, web().settings.flash_sale_queue_limit, utcnow()))


@blueprint.post("/api/flash-sales/<sale_id>/purchases")
def purchase(sale_id: str) -> tuple[Response, int] | Response:
    command, _ = read_body(PurchaseIn)
    verdict = web().flash_sales.admit(sale_id, command.customer)
    if verdict.status == 202:
        status_url = f"/api/flash-sales/{sale_id}/tickets/{verdict.ticket_id}"
        body = {"ticket_id": verdict.ticket_id, "status": "QUEUED", "status_url": status_url}
        return jsonify(body), 202
    headers = {"Retry-After": str(verdict.retry_after)} if verdict.retry_after else {}
    return problem(verdict.status, TITLES[verdict.status], verdict.detail, headers=headers)


@blueprint.get("/api/flash-sales/<sale_id>/tickets/<ticket_id>")
def get_ticket(sale_id: str, ticket_id: str) -> Response:
    with web().read_sessions() as session:
        return jsonify(flash_sale.ticket_view(session, sale_id, ticket_id, web().tickets))
