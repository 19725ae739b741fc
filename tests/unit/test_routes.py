"""Routes.read_ahead: each read-ahead once per batch, with the bodies it reads for; a body
that does not match its model is left to its handler (which makes it poison)."""

from pydantic import BaseModel

from messaging.envelope import Envelope
from messaging.routes import Route, Routes


class Answer(BaseModel):
    order_id: str


def envelope(event_type: str, body: dict) -> Envelope:
    return Envelope.new(event_type, body, correlation_id="c", app_id="test")


def test_a_read_ahead_shared_by_two_routes_runs_once_with_both_kinds_of_body():
    calls = []

    def read(session, bodies):
        calls.append([body.order_id for body in bodies])

    def ignore(session, envelope):
        pass

    routes = Routes(
        Route("yes", Answer, ignore, read),
        Route("no", Answer, ignore, read),
        Route("other", Answer, ignore),
    )
    batch = [
        envelope("yes", {"order_id": "a"}),
        envelope("other", {"order_id": "b"}),
        envelope("no", {"order_id": "c"}),
        envelope("yes", {"wrong": 1}),  # poison: its handler says so, the read-ahead skips it
        envelope("unknown", {"order_id": "d"}),
    ]
    routes.read_ahead(None, batch)
    assert calls == [["a", "c"]]
