"""The shop's topology, built from the catalog, is CONTRACT.md's AMQP section; labs and
scripts rely on these names."""

from messaging.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE
from shop.catalog import CATALOG

CONTRACT_BINDINGS = {
    "inventory.orders": {
        "order.created",
        "product.created",
        "product.stock_set",
        "flash_sale.created",
        "flash_sale.ended",
    },
    "orders.inventory": {"inventory.reserved", "inventory.rejected", "inventory.allocated"},
    "orders.read-model": {"inventory.stock_changed", "coupon.#", "notification.#"},
    "coupons.orders": {"order.created", "order.confirmed", "order.rejected"},
    "notifications.sms": {"order.confirmed", "order.rejected", "coupon.issued"},
    "coupons.rpc": set(),
    "flash-sale.requests": set(),
}
CONTRACT_OWNERS = {
    "inventory.orders": "inventory",
    "orders.inventory": "order",
    "orders.read-model": "order",
    "coupons.orders": "coupon",
    "notifications.sms": "notification",
    "coupons.rpc": "coupon",
    "flash-sale.requests": "order",
}
QUEUES = {queue.name: queue for queue in CATALOG.topology().queues}


def test_exchange_names():
    assert (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE) == ("shop.events", "shop.dead-letter")


def test_queues_and_bindings_match_the_contract():
    assert {name: set(q.bindings) for name, q in QUEUES.items()} == CONTRACT_BINDINGS
    assert {name: q.owner for name, q in QUEUES.items()} == CONTRACT_OWNERS


def test_every_work_queue_is_a_dead_lettering_quorum_queue_with_a_delivery_limit():
    for name, queue in QUEUES.items():
        arguments = queue.arguments()
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-dead-letter-exchange"] == "shop.dead-letter"
        assert arguments["x-dead-letter-routing-key"] == name
        assert arguments["x-delivery-limit"] > 0
        assert queue.dead_letter_queue == f"{name}.dead"


def test_only_the_flash_sale_queue_is_bounded_and_rejects_publishes_beyond_its_limit():
    settings = CATALOG.default_settings().with_changes(flash_sale_queue_limit=77)
    bounded = {
        q.name: q.arguments()
        for q in CATALOG.topology(settings).queues
        if "x-max-length" in q.arguments()
    }
    assert list(bounded) == ["flash-sale.requests"]
    assert bounded["flash-sale.requests"]["x-max-length"] == 77
    assert bounded["flash-sale.requests"]["x-overflow"] == "reject-publish"


def test_only_the_sold_out_news_is_a_broadcast():
    assert CATALOG.topology().broadcasts == {"flash_sale.sold_out"}
