"""The topology table is CONTRACT.md's AMQP section; labs and scripts rely on these names."""

from messaging.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    QUEUES_BY_NAME,
    queue_arguments,
)

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


def test_exchange_names():
    assert (EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE) == ("shop.events", "shop.dead-letter")


def test_queues_and_bindings_match_the_contract():
    assert {name: set(q.bindings) for name, q in QUEUES_BY_NAME.items()} == CONTRACT_BINDINGS


def test_every_work_queue_is_a_dead_lettering_quorum_queue_with_a_delivery_limit():
    for name, queue in QUEUES_BY_NAME.items():
        arguments = queue_arguments(queue, flash_sale_queue_limit=1000)
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-dead-letter-exchange"] == "shop.dead-letter"
        assert arguments["x-dead-letter-routing-key"] == name
        assert arguments["x-delivery-limit"] > 0
        assert queue.dead_letter_queue == f"{name}.dead"


def test_only_the_flash_sale_queue_is_bounded_and_rejects_publishes_beyond_its_limit():
    bounded = {
        name: queue_arguments(q, 77)
        for name, q in QUEUES_BY_NAME.items()
        if "x-max-length" in queue_arguments(q, 77)
    }
    assert list(bounded) == ["flash-sale.requests"]
    assert bounded["flash-sale.requests"]["x-max-length"] == 77
    assert bounded["flash-sale.requests"]["x-overflow"] == "reject-publish"
