"""The HTML pages: catalog and order form, live order status, flash sale, dashboard.

Server-rendered Jinja templates (autoescaped: a customer named <script> is text), with a
little JavaScript from static/ that polls the JSON API. The order form also works with
JavaScript off: it posts here, and errors come back next to their fields.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request
from pydantic import ValidationError

from messaging.outbox import utcnow
from messaging.topology import BROADCAST_BINDING, EVENTS_EXCHANGE, WORK_QUEUES
from messaging.validation import field_errors
from order_service import flash_sale, handlers
from order_service.api import web
from order_service.schemas import OrderIn
from order_service.views import order_json

blueprint = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


@blueprint.get("/")
def catalog() -> str:
    return render_catalog({}, {})


@blueprint.post("/orders")
def order_form() -> Response | tuple[str, int]:
    """The order form without JavaScript: validate, place, redirect to the order's page."""
    values = request.form.to_dict()
    with web().read_sessions() as session:
        skus = [product.sku for product in handlers.list_products(session)]
    data, errors = form_to_order(values, skus)
    if not errors:
        try:
            command = OrderIn.model_validate(data)
            placed = handlers.place_order(
                web().sessions, command, coupons=web().coupons, read_sessions=web().read_sessions
            )
            return redirect(f"/orders/{placed.order.id}", code=303)
        except ValidationError as error:
            errors = form_errors(field_errors(error), data)
        except handlers.DomainError as error:
            errors = form_errors(error.errors, data) or {"form": error.detail}
            if error.status >= 500:
                return render_catalog(values, errors), error.status
    return render_catalog(values, errors), 422


def form_to_order(values: dict[str, str], skus: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    items, errors = [], {}
    for sku in skus:
        raw = values.get(f"qty-{sku}", "").strip()
        if not raw or raw == "0":
            continue
        if not raw.isdigit():
            errors[f"qty-{sku}"] = "must be a whole number"
            continue
        items.append({"sku": sku, "quantity": int(raw)})
    data = {
        "customer": {"name": values.get("name", ""), "phone": values.get("phone", "")},
        "items": items,
        "coupon_code": values.get("coupon_code", "").strip() or None,
    }
    return data, errors


def form_errors(errors: list[dict[str, str]], data: dict[str, Any]) -> dict[str, str]:
    """API field paths ('items[0].quantity') as the form's input names ('qty-TEA-1')."""
    mapped: dict[str, str] = {}
    for error in errors:
        field = error["field"]
        if field.startswith("items["):
            index = int(field[6 : field.index("]")])
            name = f"qty-{data['items'][index]['sku']}" if index < len(data["items"]) else "items"
        else:
            name = {"customer.name": "name", "customer.phone": "phone"}.get(field, field)
        if field == "items":
            mapped["items"] = "choose at least one product"
        else:
            mapped.setdefault(name, error["message"])
    return mapped


def render_catalog(values: dict[str, str], errors: dict[str, str]) -> str:
    with web().read_sessions() as session:
        products = handlers.list_products(session)
    return render_template("catalog.html", products=products, values=values, errors=errors)


@blueprint.get("/orders/<order_id>")
def order_page(order_id: str) -> str:
    with web().read_sessions() as session:
        order = order_json(handlers.get_order(session, order_id))
    return render_template("order.html", order=order)


@blueprint.get("/flash-sales/<sale_id>")
def flash_sale_page(sale_id: str) -> str:
    with web().read_sessions() as session:
        sale = flash_sale.get_sale(session, sale_id)
        view = flash_sale.sale_view(sale, web().settings.flash_sale_queue_limit, utcnow())
        product = handlers.get_product(session, sale.sku)
    return render_template("flash_sale.html", sale=view, product=product)


@blueprint.get("/dashboard")
def dashboard() -> str:
    return render_template("dashboard.html", picture=topology_picture())


def topology_picture() -> dict[str, Any]:
    """Boxes and arrows for the dashboard's SVG: publishers -> exchanges -> queues -> owners."""
    row, top = 62, 40
    queues = [
        {
            "name": q.name,
            "bindings": list(q.bindings) or ["(default exchange)"],
            "owner": f"{q.owner}_service",
            "y": top + i * row,
        }
        for i, q in enumerate(WORK_QUEUES)
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
        "broadcast": BROADCAST_BINDING,
    }
