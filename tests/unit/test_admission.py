"""The flash-sale gate's verdicts, with a fake publisher and listener on a SQLite file: what
is answered from memory (and never reaches the broker), and what the broker decides."""

from datetime import timedelta

import pytest

from messaging.database import make_engine, make_session_factory
from messaging.outbox import utcnow
from order_service.commands import CustomerIn
from order_service.consumers.flash_worker import PURCHASE_REQUESTED, PurchaseRequest
from order_service.models import Base, FlashSale, Product
from order_service.tickets import TicketSigner
from order_service.web.admission import QUEUE, AdmissionGate
from tests.support.fakes import FakeListener, FakePublisher

ANN = CustomerIn(name="Ann", phone="+4930123456")
BOB = CustomerIn(name="Bob", phone="+4930654321")


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'orders.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def gate(sessions):
    publisher, listener = FakePublisher(), FakeListener()
    gate = AdmissionGate(sessions, TicketSigner("s"), publisher, listener, sessions)
    gate.publisher, gate.listener = publisher, listener  # for the test to reach
    yield gate
    gate.close()


def a_sale(sessions, sale_id="sale-1", **changes) -> str:
    now = utcnow()
    fields = {
        "id": sale_id,
        "sku": "PHONE",
        "price_cents": 100,
        "requested_quota": 5,
        "quota": 5,
        "sold": 0,
        "allocation": "held",
        "starts_at": now - timedelta(minutes=1),
        "ends_at": None,
        **changes,
    }
    with sessions.begin() as session:
        if session.get(Product, "PHONE") is None:
            session.add(Product(sku="PHONE", name="Phone", price_cents=900, available=10))
            session.flush()  # the product before the sale that names it
        session.add(FlashSale(**fields))
    return sale_id


def test_an_open_sale_admits_through_the_broker_with_a_ticket(gate, sessions):
    sale = a_sale(sessions)
    verdict = gate.admit(sale, ANN)
    assert (verdict.status, verdict.outcome) == (202, "accepted")
    (sent,) = gate.publisher.published
    assert (sent.exchange, sent.routing_key, sent.properties.type) == (
        "",
        QUEUE,
        PURCHASE_REQUESTED,
    )
    request = PurchaseRequest.model_validate_json(sent.body)
    assert (request.ticket_id, request.sale_id, request.customer) == (verdict.ticket_id, sale, ANN)
    assert gate.signer.issued(sale, verdict.ticket_id)


def test_a_customer_holding_a_ticket_is_409_without_asking_the_broker(gate, sessions):
    sale = a_sale(sessions)
    gate.admit(sale, ANN)
    again = gate.admit(sale, ANN)
    assert (again.status, again.outcome) == (409, "duplicate")
    assert len(gate.publisher.published) == 1


def test_unknown_upcoming_and_not_yet_allocated_sales_are_answered_from_memory(gate, sessions):
    assert gate.admit("no-such-sale", ANN).status == 404
    later = a_sale(sessions, "later", starts_at=utcnow() + timedelta(seconds=30))
    upcoming = gate.admit(later, ANN)
    assert (upcoming.status, upcoming.outcome) == (409, "not_started")
    assert 1 <= upcoming.retry_after <= 31
    pending = gate.admit(a_sale(sessions, "pending", allocation="pending"), ANN)
    assert (pending.status, pending.retry_after) == (409, 1)
    assert gate.publisher.published == []


def test_sold_out_and_ended_sales_are_410(gate, sessions):
    assert gate.admit(a_sale(sessions, "gone", sold=5), ANN).outcome == "sold_out"
    ended = a_sale(sessions, "ended", ends_at=utcnow() - timedelta(seconds=1))
    assert gate.admit(ended, ANN).outcome == "ended"
    assert gate.publisher.published == []


def test_the_sold_out_broadcast_is_heard_at_once(gate, sessions):
    sale = a_sale(sessions)
    assert gate.admit(sale, ANN).status == 202
    gate.listener.hear("flash_sale.sold_out", sale_id=sale)
    verdict = gate.admit(sale, BOB)
    assert (verdict.status, verdict.outcome) == (410, "sold_out")
    assert len(gate.publisher.published) == 1
    assert gate.memory()["holders"] == 0  # a sale that is over keeps no customers


def test_a_full_queue_is_429_and_the_next_requests_are_shed_without_asking(gate, sessions):
    sale = a_sale(sessions)
    gate.publisher.full = True
    first = gate.admit(sale, ANN)
    assert (first.status, first.outcome, first.retry_after) == (429, "queue_full", 1)
    gate.publisher.full = False
    shed = gate.admit(sale, BOB)  # within the pause: not even asked
    assert (shed.status, shed.outcome) == (429, "queue_full")
    assert gate.publisher.published == []
    assert gate.admit(sale, ANN).status in (202, 429)  # a refused customer holds nothing


def test_no_broker_is_503_and_the_customer_may_try_again(gate, sessions):
    sale = a_sale(sessions)
    gate.publisher.down = True
    verdict = gate.admit(sale, ANN)
    assert (verdict.status, verdict.outcome, verdict.retry_after) == (503, "broker_down", 2)
    gate.publisher.down = False
    assert gate.admit(sale, ANN).status == 202
