"""The teaching labs, in the order a student takes them (`shop lab list|run|check|docs`).

Labs 1-9 are the classic RabbitMQ tutorial patterns in plain pika; labs 10-17 are the
patterns of the pipeline, built from the shop's own mechanisms (messaging/, reached
through shop/labs/parts.py). Each module is one lab, read top to bottom (shop/labs/lab.py
says their shape); docs/labs.md is generated from them (`shop lab docs`).
"""

from __future__ import annotations

from shop.labs import (
    acknowledgements,
    competing_consumers,
    confirms,
    delivery_limit,
    durability,
    fair_dispatch,
    hello_queue,
    inbox,
    outbox,
    peak_shaving,
    poison,
    publish_subscribe,
    routing,
    rpc,
    saga,
    topics,
    work_queue,
)
from shop.labs.lab import Lab

LABS: tuple[Lab, ...] = tuple(
    module.LAB
    for module in (
        hello_queue,
        work_queue,
        fair_dispatch,
        acknowledgements,
        durability,
        publish_subscribe,
        routing,
        topics,
        rpc,
        outbox,
        inbox,
        poison,
        delivery_limit,
        confirms,
        peak_shaving,
        saga,
        competing_consumers,
    )
)


def find(name: str) -> Lab | None:
    return next((lab for lab in LABS if lab.name == name), None)


def number(lab: Lab) -> int:
    return LABS.index(lab) + 1
