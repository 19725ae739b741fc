import uuid

import pika
import pytest

from messaging.envelope import Envelope, PoisonMessage


def test_a_new_envelope_carries_every_contract_property():
    envelope = Envelope.new(
        "order.created", {"order_id": "o-1"}, correlation_id="o-1", app_id="order_service"
    )
    props = envelope.properties()
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert uuid.UUID(props.message_id)
    assert props.correlation_id == "o-1"
    assert props.type == "order.created"
    assert props.app_id == "order_service"
    assert isinstance(props.timestamp, int)
    assert props.headers == {"schema_version": 1}


def test_every_event_gets_its_own_message_id():
    ids = {Envelope.new("x", {}, correlation_id="c", app_id="a").message_id for _ in range(100)}
    assert len(ids) == 100


def test_an_envelope_survives_the_wire():
    sent = Envelope.new("order.created", {"n": 1, "text": "ü"}, correlation_id="c", app_id="a")
    received = Envelope.from_delivery(sent.properties(), sent.encoded_body())
    assert received == sent


@pytest.mark.parametrize(
    ("properties", "body", "reason"),
    [
        (pika.BasicProperties(), b"{}", "no message_id"),
        (pika.BasicProperties(message_id="m"), b"{oops", "not JSON"),
        (pika.BasicProperties(message_id="m"), b"\xff\xfe", "not JSON"),
        (pika.BasicProperties(message_id="m"), b"[1, 2]", "not a JSON object"),
    ],
)
def test_an_unreadable_message_is_poison(properties, body, reason):
    with pytest.raises(PoisonMessage, match=reason):
        Envelope.from_delivery(properties, body)
