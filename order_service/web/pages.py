"""The HTML pages: catalog and order form (with the running and upcoming flash sales),
live order status, flash sale, and the admin page. (The pipeline dashboard is the shop's,
not the order service's: shop/ops/.)

Server-rendered Jinja templates (autoescaped: a customer named <script> is text), with a
little JavaScript from static/ that polls the JSON API. The order form also works with
JavaScript off: it posts here, and errors come back next to their fields. The admin page
is only a page: its script calls the same JSON API as curl does, with the token the admin
types once per browser session (kept in sessionStorage, never in a cookie or a URL), so
this module has no admin route of its own.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request
from pydantic import ValidationError

from messaging.outbox import utcnow
from messaging.validation import field_errors
from order_service.commands import OrderIn
from order_service.errors import DomainError
from order_service.use_cases import flash_sales, orders, products
from order_service.web.context import web
from order_service.web.problems import status_of
from order_service.web.serializers import OrderOut, sale_view

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
        skus = [product.sku for product in products.list_products(session)]
    data, errors = form_to_order(values, skus)
    if not errors:
        try:
            command = OrderIn.model_validate(data)
            placed = orders.place_order(
                web().sessions, command, coupons=web().coupons, read_sessions=web().read_sessions
            )
            return redirect(f"/orders/{placed.order.id}", code=303)
        except ValidationError as error:
            errors = form_errors(field_errors(error), data)
        except DomainError as error:
            errors = form_errors(error.errors, data) or {"form": error.detail}
            status, _title = status_of(error)
            if status >= 500:
                return render_catalog(values, errors), status
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
    now = utcnow()
    limit = web().settings.flash_sale_queue_limit
    with web().read_sessions() as session:
        listed = products.list_products(session)
        sales = [sale_view(sale, limit, now) for sale in flash_sales.current_sales(session, now)]
    return render_template(
        "catalog.html",
        products=listed,
        by_sku={product.sku: product for product in listed},
        sales=sales,
        values=values,
        errors=errors,
    )


@blueprint.get("/orders/<order_id>")
def order_page(order_id: str) -> str:
    with web().read_sessions() as session:
        order = OrderOut.of(orders.get_order(session, order_id)).json()
    return render_template("order.html", order=order)


@blueprint.get("/admin")
def admin_page() -> str:
    return render_template("admin.html")


@blueprint.get("/flash-sales/<sale_id>")
def flash_sale_page(sale_id: str) -> str:
    with web().read_sessions() as session:
        sale = flash_sales.get_sale(session, sale_id)
        view = sale_view(sale, web().settings.flash_sale_queue_limit, utcnow())
        product = products.get_product(session, sale.sku)
    return render_template("flash_sale.html", sale=view, product=product)
