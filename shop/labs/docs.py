"""docs/labs.md, generated from the lab modules (`shop docs`), so the page
and the labs never drift apart; tests/unit/test_labs.py fails when it is stale."""

from __future__ import annotations

from shop.labs import LABS, number
from shop.labs.lab import Lab

INTRO = """\
# Labs: run it, break it, check it

<!-- Generated from shop/labs/ by `shop docs`: edit the labs, not this. -->

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


def render() -> str:
    pipeline_starts = next(number(lab) for lab in LABS if lab.name == FIRST_PIPELINE_LAB)
    contents = "\n".join(f"{number(lab)}. [{lab.title}](#{anchor(lab)})" for lab in LABS)
    intro = INTRO.replace("@LAST_TUTORIAL_LAB@", str(pipeline_starts - 1))
    intro = intro.replace("@CONTENTS@", contents)
    return intro + "".join(section(lab) for lab in LABS)


def anchor(lab: Lab) -> str:
    return f"lab-{number(lab)}-{lab.name}"


def section(lab: Lab) -> str:
    parts = [
        f'\n<a id="{anchor(lab)}"></a>\n## {number(lab)}. {lab.title}\n',
        f"**{lab.question}**\n",
        lab.explanation + "\n",
        f"- `shop lab run {lab.name}` (sound: {lab.sound.label}): {lab.sound.does}.",
        f"- `shop lab run {lab.name} --broken` (broken: {lab.broken.label}): {lab.broken.does}.",
        f"- The guarantee: {lab.guarantee}.",
        f"- What each run measures and prints: \u201c{lab.outcome}\u201d.",
    ]
    parts.append(f"\n**Read:** {lab.read}\n")
    if lab.by_hand:
        parts.append(f"**By hand, on `make run`:**\n\n{lab.by_hand.strip()}\n")
    return "\n".join(parts)
