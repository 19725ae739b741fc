"""The order saga has no coordinator. Each service reacts to the events it is bound to and
publishes its own decision: the order service takes the order (`order.created`), the
inventory reserves every line or none (`inventory.rejected` here: not enough stock), the
order service follows its answer (`order.rejected`), the coupon service hears that and
releases the coupon it held for the order (`coupon.released`: the compensation), and the
notification service sends the customer one SMS. The order's timeline tells who decided
each step.

This lab runs the real shop: the four services as threads on their own SQLite databases
and the web app in process, all on the lab's vhost. The broken variant changes one thing
only, a binding: `coupons.orders` no longer hears `order.rejected`. Nothing fails, no log
says error, the customer is told the order was rejected, and the coupon stays held for
an order that will never be: in a choreography, a compensation is only a subscription.
"""

from __future__ import annotations

import secrets

from shop.labs import parts
from shop.labs.lab import Figures, Lab, Run, Variant, wait_for

LAB = Lab(
    name="saga",
    title="The saga: a rejection compensates",
    question="An order with a coupon is rejected for want of stock: who undoes what?",
    sound=Variant("choreography", "the shop as it is: every service bound to what it needs"),
    broken=Variant(
        "a missing binding", "`coupons.orders` is unbound from `order.rejected`, nothing else"
    ),
    guarantee="a rejected order releases its coupon, and the customer gets one SMS",
    holds=lambda figures: (
        figures["status"] == "REJECTED" and figures["coupon_released"] and figures["sms"] == 1
    ),
    outcome=(
        "the order was {status} ({reason}); coupon released: {coupon_released} ({coupon}); "
        "{sms} SMS; who decided: {story}"
    ),
    read=(
        "order_service/consumers/saga.py (the order follows the inventory), "
        "inventory_service/handlers.py (all lines or none), coupon_service/handlers.py "
        "(`on_order_rejected`: the compensation), messaging/topology.py (the bindings)."
    ),
    by_hand="""\
Create a coupon (`post /api/coupons '{"code": "LAB", "amount_off_cents": 100}'`), set the
stock of TEA-1 to 1 (`curl -X PUT .../api/products/TEA-1/stock -d '{"stock": 1}' ...`), and
order 2 with the coupon. Read the timeline: the inventory says no, the order is rejected,
the coupon service releases the coupon, the customer gets one SMS. Which service decided
each step? Where would you add a payment service?
""",
)

SKU, COUPON = "TEA-1", "LAB"
SETTLE_SECONDS = 30.0  # a rejected order's whole story takes well under a second when idle
COMPENSATION_SECONDS = 6.0  # after the SMS, how long the release may still take


@LAB.measure
def measure(run: Run) -> Figures:
    token = secrets.token_urlsafe(16)
    shop = parts.start_shop(run.workdir, run.amqp_url, token)
    try:
        return story_of_a_rejection(run, shop, {"Authorization": f"Bearer {token}"})
    finally:
        shop.close()


def story_of_a_rejection(run: Run, shop: parts.Shop, admin: dict[str, str]) -> Figures:
    client = shop.client
    product = {"sku": SKU, "name": "Green tea", "price_cents": 450, "stock": 1}
    client.post("/api/products", json=product, headers=admin)
    client.post("/api/coupons", json={"code": COUPON, "amount_off_cents": 100}, headers=admin)
    # The product on the shop's pages proves the events flow: every service is connected.
    wait_for(lambda: client.get(f"/api/products/{SKU}").get_json().get("available") == 1, 30)
    wait_for(lambda: all(parts.consumers_of(run.amqp_url, q) for q in parts.SERVICE_QUEUES), 30)
    run.say(f"started the shop's four services; a product with stock 1, a coupon {COUPON}")
    if run.broken:
        parts.unbind_event(run.amqp_url, "coupons.orders", "order.rejected")
        run.say("unbound `coupons.orders` from `order.rejected`")

    order = {
        "customer": {"name": "Ann Lee", "phone": "+4930123456"},
        "items": [{"sku": SKU, "quantity": 2}],
        "coupon_code": COUPON,
    }
    order_id = client.post("/api/orders", json=order).get_json()["id"]
    run.say(f"ordered 2 {SKU} with the coupon: order {order_id}, PENDING")

    def story() -> dict:  # type: ignore[type-arg]
        return client.get(f"/api/orders/{order_id}").get_json()

    def told(event: str) -> bool:
        return any(entry["event"] == event for entry in story()["timeline"])

    wait_for(lambda: told("notification.sms_sent"), SETTLE_SECONDS, pause=0.05)
    wait_for(lambda: told("coupon.released"), COMPENSATION_SECONDS, pause=0.05)
    final = story()
    quote = client.get(f"/api/coupons/{COUPON}?subtotal_cents=900").get_json()
    run.say("read the order's timeline and asked for a quote of the coupon")
    return {
        "status": final["status"],
        "reason": final["reject_reason"],
        "coupon_released": quote["valid"],
        "coupon": "usable again" if quote["valid"] else quote.get("reason"),
        "sms": sum(1 for entry in final["timeline"] if entry["event"] == "notification.sms_sent"),
        "story": ", ".join(f"{e['event']} by {e['service']}" for e in final["timeline"]),
    }
