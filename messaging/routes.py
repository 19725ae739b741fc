"""Routing a queue's messages by their type: each type its handler, and the model its body
must match (a body that does not is poison).

    ROUTES = Routes(
        Route("order.created", OrderCreated, on_order_created),
        Route("product.created", ProductCreated, on_product_created),
    )

`ROUTES` is the consumer's handler, and `ROUTES.models` says what the queue carries: a
service's catalog entry lists it (the contract tests and docs/asyncapi.yaml read it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy.orm import Session

from messaging.envelope import Envelope, PoisonMessage

Handler = Callable[[Session, Envelope], None]


@dataclass(frozen=True)
class Route:
    """Messages of one type: the model their body must match, and what handles them."""

    event: str
    model: type[BaseModel]
    handler: Handler


class Routes:
    """One handler per message type; a type the queue should never carry is poison.

    Called as a handler, it validates the body against the route's model first (poison if
    it does not match; the handler's own `envelope.body_as(model)` then costs nothing).
    """

    def __init__(self, *routes: Route) -> None:
        self.by_type: Mapping[str, Route] = {route.event: route for route in routes}
        if len(self.by_type) != len(routes):
            raise ValueError("two routes for one message type")

    @property
    def models(self) -> dict[str, type[BaseModel]]:
        """{message type: the model its body must match}: what this consumer reads."""
        return {event: route.model for event, route in self.by_type.items()}

    def __call__(self, session: Session, envelope: Envelope) -> None:
        route = self.by_type.get(envelope.type)
        if route is None:
            raise PoisonMessage(f"no handler for message type {envelope.type!r}")
        envelope.body_as(route.model)
        route.handler(session, envelope)
