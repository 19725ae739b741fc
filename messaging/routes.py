"""Routing a queue's messages by their type: each type its handler, and the model its body
must match (a body that does not is poison).

    ROUTES = Routes(
        Route("order.created", OrderCreated, on_order_created),
        Route("product.created", ProductCreated, on_product_created),
    )

`ROUTES` is the consumer's handler, and `ROUTES.models` says what the queue carries: a
service's catalog entry lists it (the contract tests and docs/asyncapi.yaml read it).

A route may also say how to read, once for a whole batch, what its handler would look up
per message (`read_ahead`: messaging/batch_reads.py); the consumer runner calls
`ROUTES.read_ahead` before the batch's first handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from messaging.envelope import Envelope, PoisonMessage

Handler = Callable[[Session, Envelope], None]
BatchReader = Callable[[Session, list[Any]], None]  # (session, the batch's bodies it reads for)


@dataclass(frozen=True)
class Route:
    """Messages of one type: the model their body must match, what handles them, and what
    reads ahead for a batch of them (optional; routes may share one)."""

    event: str
    model: type[BaseModel]
    handler: Handler
    read_ahead: BatchReader | None = None


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

    def read_ahead(self, session: Session, envelopes: list[Envelope]) -> None:
        """Each read-ahead once, with the bodies of the batch's messages it reads for (a
        body that does not match its model is left to its handler, which calls it poison)."""
        bodies: dict[BatchReader, list[Any]] = {}
        for envelope in envelopes:
            route = self.by_type.get(envelope.type)
            if route is None or route.read_ahead is None:
                continue
            try:
                bodies.setdefault(route.read_ahead, []).append(envelope.body_as(route.model))
            except PoisonMessage:
                continue
        for read, found in bodies.items():
            read(session, found)

    def __call__(self, session: Session, envelope: Envelope) -> None:
        route = self.by_type.get(envelope.type)
        if route is None:
            raise PoisonMessage(f"no handler for message type {envelope.type!r}")
        envelope.body_as(route.model)
        route.handler(session, envelope)
