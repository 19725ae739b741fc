"""The shop's messages as an AsyncAPI 3.0 document, built from the catalog.

- one channel per event on `shop.events` (its address is the routing key, the event's
  name), with the producer's model as the message's payload and its example;
- one channel per work queue, with the messages put straight into it (the flash-sale
  purchases, the coupon RPC requests: the consumer's model);
- a `send` operation for every event a service announces, and a `receive` operation for
  every message type a service reads from one of its queues (which queue, in its summary).

The web processes' exclusive queues (bound to `flash_sale.#`) are described in the
broadcast events' operations. `shop docs` writes it to docs/asyncapi.yaml.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from messaging.envelope import SCHEMA_VERSION
from messaging.events import Event
from messaging.topology import DEAD_LETTER_EXCHANGE, DELIVERY_LIMIT, EVENTS_EXCHANGE
from shop.catalog import CATALOG, Catalog

REF = "#/components/schemas/{model}"


def document(catalog: Catalog = CATALOG) -> dict[str, Any]:
    topology = catalog.topology()
    published = {event.TYPE: (service, event) for service in catalog for event in service.publishes}
    direct = {  # message types put straight into a queue: {type: (queue, consumer's model)}
        event: (queue.name, model)
        for service in catalog
        for queue in topology.queues_of(service.name)
        if not queue.bindings
        for event, model in service.reads.get(queue.name, {}).items()
    }
    models: list[type[BaseModel]] = [event for _, event in published.values()]
    models += [model for _, model in direct.values() if model not in models]
    refs, top = models_json_schema([(m, "serialization") for m in models], ref_template=REF)

    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type, (service, event) in sorted(published.items()):
        messages[_id(event_type)] = _message(event_type, event, refs[(event, "serialization")])
        channels[_id(event_type)] = {
            "address": event_type,
            "description": f"Routing key {event_type!r} on the topic exchange {EVENTS_EXCHANGE}.",
            "messages": {_id(event_type): {"$ref": f"#/components/messages/{_id(event_type)}"}},
            "bindings": {"amqp": _exchange_binding()},
        }
        operations[f"{service.name}.sends.{event_type}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_id(event_type)}"},
            "summary": f"{service.package} announces it through its outbox, with publisher "
            f"confirms ({_mandatory(topology.is_broadcast(event_type))}).",
        }
    for event_type, (_queue, model) in sorted(direct.items()):
        messages[_id(event_type)] = _message(event_type, model, refs[(model, "serialization")])
    for queue in topology.queues:
        channels[_id(queue.name)] = _queue_channel(queue, direct)
    for service in catalog:
        for queue, reads in service.reads.items():
            for event_type in sorted(reads):
                channel = queue if event_type in direct else event_type
                operations[f"{service.name}.receives.{event_type}.from.{queue}"] = {
                    "action": "receive",
                    "channel": {"$ref": f"#/channels/{_id(channel)}"},
                    "summary": f"{service.package} reads it from its queue {queue}, "
                    "acking after its transaction commits; a duplicate changes nothing.",
                }
    for event_type in sorted(topology.broadcasts):
        operations[f"web.receives.{event_type}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{_id(event_type)}"},
            "summary": "Every web process hears it on an exclusive, server-named queue bound "
            "to flash_sale.# (its admission gate answers from memory from then on).",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Rabbit Shop events",
            "version": str(SCHEMA_VERSION),
            "description": (
                "Every message of the order pipeline. Generated from the code by `shop docs` "
                "(shop/contracts/asyncapi.py): do not edit by hand. Every message carries "
                "content_type application/json, delivery_mode 2, a message_id (the key of "
                "de-duplication), a correlation_id, its type, a timestamp, the publishing "
                "service as app_id and the header schema_version (docs/contract.md)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "AMQP_URL; several comma-separated URLs for a cluster.",
            }
        },
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items())), "schemas": top["$defs"]},
    }


def _id(name: str) -> str:
    """A name fit for a component key: order.created -> order_created."""
    return name.replace(".", "_").replace("-", "_")


def _mandatory(broadcast: bool) -> str:
    if broadcast:
        return "without mandatory: a broadcast nobody may be listening to"
    return "mandatory: an event no queue takes is an error"


def _message(message_type: str, model: type[BaseModel], schema: dict) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": message_type,
        "title": message_type,
        "contentType": "application/json",
        "payload": schema,
        "bindings": {"amqp": {"messageType": message_type, "bindingVersion": "0.3.0"}},
    }
    summary = getattr(model, "SUMMARY", "") or (model.__doc__ or "").strip().split("\n")[0]
    if summary:
        message["summary"] = summary
    if issubclass(model, Event):
        message["examples"] = [{"payload": model.example().body()}]
    return message


def _exchange_binding() -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {
            "name": EVENTS_EXCHANGE,
            "type": "topic",
            "durable": True,
            "autoDelete": False,
        },
        "bindingVersion": "0.3.0",
    }


def _queue_channel(queue, direct: dict) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    arguments = ", ".join(f"{k}={v}" for k, v in queue.arguments().items())
    bound = ", ".join(queue.bindings) or "nothing: messages come through the default exchange"
    channel: dict[str, Any] = {
        "address": queue.name,
        "description": (
            f"The {queue.owner} service's durable quorum queue ({arguments}). Bound to "
            f"{EVENTS_EXCHANGE} with: {bound}. A message that fails {DELIVERY_LIMIT} times, or "
            f"can never be handled, goes to {queue.dead_letter_queue} through "
            f"{DEAD_LETTER_EXCHANGE}."
        ),
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": queue.name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                },
                "bindingVersion": "0.3.0",
            }
        },
    }
    mine = sorted(t for t, (name, _model) in direct.items() if name == queue.name)
    if mine:
        channel["messages"] = {_id(t): {"$ref": f"#/components/messages/{_id(t)}"} for t in mine}
    return channel
