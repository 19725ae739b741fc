"""The catalog: list and show products, create one, ask the inventory to set its stock.

`available` is the order service's read model of the stock (consumers/read_model.py keeps
it), so creating a product or setting its stock only announces it: the inventory decides
and reports back.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from order_service.commands import ProductIn, StockIn
from order_service.errors import Conflict, NotFound
from order_service.events import ProductCreated, StockSet, outbox
from order_service.models import Product


def list_products(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).order_by(Product.name, Product.sku)))


def get_product(session: Session, sku: str) -> Product:
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(f"No product has sku {sku!r}.")
    return product


def create_product(session: Session, command: ProductIn) -> Product:
    if session.get(Product, command.sku) is not None:
        raise Conflict(f"A product with sku {command.sku!r} exists already.")
    product = Product(
        sku=command.sku,
        name=command.name,
        price_cents=command.price_cents,
        available=command.stock,
    )
    session.add(product)
    outbox.add_event(
        session,
        ProductCreated(
            sku=command.sku, name=command.name, price_cents=command.price_cents, stock=command.stock
        ),
        correlation_id=command.sku,
    )
    return product


def set_stock(session: Session, sku: str, command: StockIn) -> None:
    """Ask the inventory to set the stock; `available` follows when it reports back."""
    get_product(session, sku)
    outbox.add_event(session, StockSet(sku=sku, stock=command.stock), correlation_id=sku)
