from datetime import UTC, datetime, timedelta

from order_service.models import FlashSale
from order_service.tickets import TicketSigner
from order_service.use_cases.flash_sales import sale_status

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def a_sale(**changes) -> FlashSale:
    fields = {"quota": 10, "sold": 0, "starts_at": NOW - timedelta(minutes=1), "ends_at": None}
    return FlashSale(**{**fields, **changes})


def test_a_sale_is_upcoming_open_sold_out_or_ended():
    assert sale_status(a_sale(starts_at=NOW + timedelta(minutes=1)), NOW) == "upcoming"
    assert sale_status(a_sale(), NOW) == "open"
    assert sale_status(a_sale(sold=10), NOW) == "sold_out"
    assert sale_status(a_sale(ends_at=NOW), NOW) == "ended"
    assert sale_status(a_sale(sold=10, ends_at=NOW - timedelta(seconds=1)), NOW) == "ended"


def test_sqlite_datetimes_without_a_zone_are_read_as_utc():
    naive = a_sale(starts_at=(NOW + timedelta(minutes=1)).replace(tzinfo=None))
    assert sale_status(naive, NOW) == "upcoming"


def test_a_ticket_is_recognised_only_for_its_own_sale_and_secret():
    signer = TicketSigner("secret")
    ticket = signer.issue("sale-1")
    assert len(ticket) == 40
    assert signer.issued("sale-1", ticket)
    assert not signer.issued("sale-2", ticket)
    assert not TicketSigner("another secret").issued("sale-1", ticket)
    assert not signer.issued("sale-1", ticket[:-1] + ("0" if ticket[-1] != "0" else "1"))
    assert not signer.issued("sale-1", "short")
    assert signer.issue("sale-1") != ticket


def test_a_sale_waits_for_its_units_before_it_opens():
    assert sale_status(a_sale(allocation="pending"), NOW) == "upcoming"
    assert sale_status(a_sale(allocation="held"), NOW) == "open"
    assert sale_status(a_sale(allocation="pending", ends_at=NOW), NOW) == "ended"
    assert sale_status(a_sale(allocation="held", quota=0), NOW) == "sold_out"  # none held


def test_a_sale_body_says_when_it_holds_fewer_units_than_asked():
    from order_service.web.serializers import sale_view

    partial = a_sale(id="s", sku="X", price_cents=1, requested_quota=5, quota=3, allocation="held")
    view = sale_view(partial, 1000, NOW)
    assert (view["quota"], view["requested_quota"], view["remaining"]) == (3, 5, 3)
    assert view["note"] == "the inventory could set aside 3 of the 5 units asked for"
    whole = a_sale(id="s", sku="X", price_cents=1, requested_quota=10, allocation="held")
    assert "note" not in sale_view(whole, 1000, NOW)
    pending = sale_view(
        a_sale(id="s", sku="X", price_cents=1, requested_quota=10, allocation="pending"), 1000, NOW
    )
    assert pending["note"] == "the sale opens once the inventory has set its units aside"
