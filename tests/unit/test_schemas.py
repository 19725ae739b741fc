import pytest
from pydantic import ValidationError

from messaging.validation import field_errors, field_path
from order_service.commands import OrderIn, normalize_phone


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("+49 (30) 123-4567", "+49301234567"), ("030 1234567", "0301234567"), ("1234567", "1234567")],
)
def test_phone_numbers_are_normalized(raw, normalized):
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize("raw", ["123456", "call me", "+", "12345678901234567", "++4930123456"])
def test_bad_phone_numbers_are_refused(raw):
    with pytest.raises(ValueError, match="7 to 15 digits"):
        normalize_phone(raw)


def test_field_paths_read_like_the_json():
    assert field_path(("items", 0, "quantity")) == "items[0].quantity"
    assert field_path(("customer", "phone")) == "customer.phone"
    assert field_path(()) == "body"


def test_every_error_names_its_field_with_a_readable_message():
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate(
            {"customer": {"name": "A", "phone": "1"}, "items": [{"sku": "S", "quantity": 0}]}
        )
    assert field_errors(caught.value) == [
        {
            "field": "customer.phone",
            "message": "must be a phone number of 7 to 15 digits, optionally starting with +",
        },
        {"field": "items[0].quantity", "message": "input should be greater than or equal to 1"},
    ]


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(ValidationError) as caught:
        OrderIn.model_validate({"customer": {"name": "A", "phone": "1234567"}, "itmes": []})
    assert field_errors(caught.value) == [
        {"field": "items", "message": "is required"},
        {"field": "itmes", "message": "is not a known field"},
    ]
