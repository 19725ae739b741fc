"""The flash-sale routes of CONTRACT.md: thin; the rules are in use_cases/flash_sales.py,
the gate in admission.py, the ticket worker in consumers/flash_worker.py."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from messaging.outbox import utcnow
from order_service.commands import FlashSaleIn, PurchaseIn
from order_service.use_cases import flash_sales
from order_service.web.auth import admin_only
from order_service.web.context import web
from order_service.web.inputs import read_body
from order_service.web.openapi import Answer, documented
from order_service.web.problems import problem
from order_service.web.serializers import SaleOut, TicketIssued, TicketOut, sale_view

blueprint = Blueprint("flash_sales", __name__)

TITLES = {
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


@blueprint.post("/api/flash-sales")
@documented(
    "Create a flash sale (admin); it opens once the inventory holds its units.",
    Answer(201, "Created.", SaleOut, headers=("Location",)),
    Answer(404, "No such sku."),
    body=FlashSaleIn,
    tag="flash sale",
)
@admin_only
def create_sale() -> tuple[Response, int, dict[str, str]]:
    command, _ = read_body(FlashSaleIn)
    with web().sessions.begin() as session:
        sale = flash_sales.create_sale(session, command)
        view = sale_view(sale, web().settings.flash_sale_queue_limit, utcnow())
    return jsonify(view), 201, {"Location": f"/api/flash-sales/{sale.id}"}


@blueprint.get("/api/flash-sales")
@documented(
    "The running and upcoming sales, and those sold out in the last ten minutes; open ones "
    "first, then by start (at most 50).",
    Answer(200, "The sales, each as GET /api/flash-sales/{id} shows it.", SaleOut, many=True),
    tag="flash sale",
)
def list_sales() -> Response:
    now = utcnow()
    limit = web().settings.flash_sale_queue_limit
    with web().read_sessions() as session:
        sales = flash_sales.current_sales(session, now)
        return jsonify([sale_view(sale, limit, now) for sale in sales])


@blueprint.get("/api/flash-sales/<sale_id>")
@documented(
    "One flash sale.",
    Answer(200, "The sale.", SaleOut),
    Answer(404, "No such sale."),
    tag="flash sale",
)
def get_sale(sale_id: str) -> Response:
    with web().read_sessions() as session:
        sale = flash_sales.get_sale(session, sale_id)
        return jsonify(sale_view(sale, web().settings.flash_sale_queue_limit, utcnow()))


@blueprint.post("/api/flash-sales/<sale_id>/purchases")
@documented(
    "Try to buy one unit: a ticket in the queue, or an answer at once.",
    Answer(202, "Admitted: a ticket, decided soon.", TicketIssued),
    Answer(404, "No such sale."),
    Answer(409, "Not open yet (Retry-After), or this customer holds a ticket already."),
    Answer(410, "Sold out, or ended."),
    Answer(
        429, "The queue is at its limit: try again after Retry-After.", headers=("Retry-After",)
    ),
    body=PurchaseIn,
    tag="flash sale",
)
def purchase(sale_id: str) -> tuple[Response, int] | Response:
    command, _ = read_body(PurchaseIn)
    verdict = web().flash_sales.admit(sale_id, command.customer)
    if verdict.status == 202:
        status_url = f"/api/flash-sales/{sale_id}/tickets/{verdict.ticket_id}"
        issued = TicketIssued(ticket_id=verdict.ticket_id or "", status_url=status_url)
        return jsonify(issued.json()), 202
    headers = {"Retry-After": str(verdict.retry_after)} if verdict.retry_after else {}
    return problem(verdict.status, TITLES[verdict.status], verdict.detail, headers=headers)


@blueprint.get("/api/flash-sales/<sale_id>/tickets/<ticket_id>")
@documented(
    "A ticket: QUEUED, WON (with its order) or LOST (with the reason).",
    Answer(200, "The ticket.", TicketOut),
    Answer(404, "This sale issued no such ticket."),
    tag="flash sale",
)
def get_ticket(sale_id: str, ticket_id: str) -> Response:
    with web().read_sessions() as session:
        ticket = flash_sales.find_ticket(session, sale_id, ticket_id, web().tickets)
        return jsonify(TicketOut.of(ticket_id, ticket).json())
