"""docs/labs.md, generated from the lab modules (`shop lab docs > docs/labs.md`), so the page
and the labs never drift apart; tests/unit/test_lab_docs.py fails when it is stale."""

from __future__ import annotations

from shop.labs import LABS, number
from shop.labs.lab import Lab

INTRO = """\
# Labs: run it, break it, check it

<!-- Generated from shop/labs/ by `shop lab docs > docs/labs.md`: edit the labs, not this. -->

Each lab asks one question and answers it by measurement, in its own vhost on the broker at
`AMQP_URL` (or, where it restarts a broker, on a throwaway node of its own), so it never
disturbs a running shop. Every lab has a sound variant, which keeps a guarantee, and a
broken one, which shows why the sound one exists.

```sh
shop lab list                              # the labs, one a line
shop lab run acknowledgements              # the sound variant: the guarantee holds
shop lab run acknowledgements --broken     # the unsafe variant: watch it fail
shop lab run acknowledgements --json       # {"lab", "variant", "holds", "figures", "summary", ...}
shop lab check                             # every lab, both variants, as a table
```

`shop lab run` prints the question, what it did, the measured outcome and where to read the
mechanism in the code. It exits 0 when the variant behaved as the lab teaches (the sound
one holds, the broken one shows its failure), 1 when it did not, 2 when it could not run
(one line says why). Every run also writes its report to `var/labs/NAME-VARIANT.json` and
its logs beside it. `shop lab check` runs both variants of every lab and exits 0 when all
behave; `make test` runs it too.

Labs 1 to @LAST_TUTORIAL_LAB@ are the classic RabbitMQ tutorial patterns, in
plain pika; the later ones are the patterns of the pipeline, built from the shop's own
`messaging/`. Many say how to try the same by hand on the running shop: `make run` in one
terminal, and in another, with the admin token that `make run` printed:

```sh
TOKEN=$(cat var/admin-token)
post() { curl -s -X POST "localhost:8000$1" -H 'Content-Type: application/json' \\
              -H "Authorization: Bearer $TOKEN" -d "$2"; echo; }
post /api/products '{"sku": "TEA-1", "name": "Green tea", "price_cents": 450, "stock": 20}'
```

@CONTENTS@
"""

FIRST_PIPELINE_LAB = "outbox"

# The pipeline's labs, by hand only until each becomes a runnable lab module.
BY_HAND_ONLY = """
## The pipeline, by hand

These are not runnable labs yet: try them on `make run`.

### The broker goes away; the orders do not

1. `sudo rabbitmqctl stop_app` (or `docker compose stop rabbitmq`).
2. Place three orders (the same command three times):
   `post /api/orders '{"customer": {"name": "Ann", "phone": "+4930123456"},
   "items": [{"sku": "TEA-1", "quantity": 1}]}'`.
   Every one answers 201. The relay logs that it lost the broker and is reconnecting.
3. `sqlite3 var/orders.db 'select id, event_type, sent_at from order_outbox'`: the events wait.
4. `sudo rabbitmqctl start_app`. Within seconds the relay reconnects and publishes;
   `shop status` shows them in `inventory.orders`, in order.

Question: what would a service that published inside the request have answered in step 2?
### Poison and the dead-letter queue

1. Open the management UI (http://localhost:15672, guest/guest), queue `inventory.orders`,
   and publish a message with the payload `{not json` and a `message_id` property. The
   inventory log says "poison message dead-lettered" and goes on with the next order.
2. `shop dlq list inventory.orders` shows it with `reason=rejected`.
3. `shop dlq replay inventory.orders` moves it back for another try.
### What confirms cost

`make bench` publishes 20,000 events four ways: raw pika without confirms, the relay on
SQLite and PostgreSQL, and one synchronous confirm per message. Read `messaging/publisher.py`
to see why the relay is as fast as unconfirmed publishing while being safe.
### The same key twice

Send the same order twice with `-H 'Idempotency-Key: abc'`: the same order comes back.
Change the quantity and keep the key: 409. Why is the key stored in the same transaction
as the order?
### A saga without a coordinator

Create a coupon (`post /api/coupons '{"code": "LAB", "amount_off_cents": 100}'`), set the
stock of TEA-1 to 1 (`curl -X PUT .../api/products/TEA-1/stock -d '{"stock": 1}' ...`), and
order 2 with the coupon. Read the timeline: the inventory says no, the order is rejected,
the coupon service releases the coupon, the customer gets one SMS. Which service decided
each step? Where would you add a payment service?
### A flash sale, and what a bounded queue buys you

Freeze the order process (`kill -STOP <pid>` of `shop run order`: nobody decides tickets
now) and start a burst in another terminal:
`shop loadtest flash-sale --customers 3000 --concurrency 50 --quota 10 --timeout 120`.
It makes its own product and sale. Watch `flash-sale.requests` fill to
FLASH_SALE_QUEUE_LIMIT in `shop status` (or on `/dashboard`), and the 429s take over.
Within the two minutes, `kill -CONT <pid>`: the worker decides every admitted ticket, sells
exactly 10, the rest are LOST with "sold out", and the report's invariants all say ok. Then
read `order_service/admission.py`: which requests never touched the broker at all?
"""


def render() -> str:
    pipeline_starts = next(
        (number(lab) for lab in LABS if lab.name == FIRST_PIPELINE_LAB), len(LABS) + 1
    )
    contents = "\n".join(f"{number(lab)}. [{lab.title}](#{anchor(lab)})" for lab in LABS)
    intro = INTRO.replace("@LAST_TUTORIAL_LAB@", str(pipeline_starts - 1))
    intro = intro.replace("@CONTENTS@", contents)
    return intro + "".join(section(lab) for lab in LABS) + BY_HAND_ONLY


def anchor(lab: Lab) -> str:
    return f"lab-{number(lab)}-{lab.name}"


def section(lab: Lab) -> str:
    parts = [
        f'\n<a id="{anchor(lab)}"></a>\n## {number(lab)}. {lab.title}\n',
        f"**{lab.question}**\n",
        lab.explanation + "\n",
        f"- `shop lab run {lab.name}` (sound: *{lab.sound.label}*): {lab.sound.does}.",
        f"- `shop lab run {lab.name} --broken` (*{lab.broken.label}*): {lab.broken.does}.",
        f"- The guarantee: {lab.guarantee}.",
        f"- What each run measures and prints: \u201c{lab.outcome}\u201d.",
    ]
    if lab.needs_broker_node:
        parts.append(
            "- It restarts a broker, so it runs on a throwaway node started from the "
            "distribution's `rabbitmq-server` (installed where CI runs), never the shared one."
        )
    parts.append(f"\n**Read:** {lab.read}\n")
    if lab.by_hand:
        parts.append(f"**By hand, on `make run`:**\n\n{lab.by_hand.strip()}\n")
    return "\n".join(parts)
