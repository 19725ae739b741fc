"""Producers and consumers agree: every event a service announces validates against every
consumer's model for it, every queue reads exactly what its bindings route to it, and the
committed docs/asyncapi.yaml is valid AsyncAPI 3.0. No broker: the catalog only."""

import fnmatch
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from polyfactory.factories.pydantic_factory import ModelFactory
from pydantic import ValidationError

from messaging.envelope import Envelope
from shop.catalog import CATALOG

PUBLISHED = {event.TYPE: (service, event) for service in CATALOG for event in service.publishes}
TOPOLOGY = CATALOG.topology()
READS = [
    (service, queue, event_type, model)
    for service in CATALOG
    for queue, reads in service.reads.items()
    for event_type, model in reads.items()
]
EVENT_READS = [read for read in READS if TOPOLOGY.queue(read[1]).bindings]


def instances(event, count=25):
    """The event's example and `count` random instances of its model (builds its own
    validators refuse are tried again)."""
    factory = ModelFactory.create_factory(event)
    made = [event.example()]
    for _ in range(count * 4):
        try:
            made.append(factory.build())
        except ValidationError:
            continue
        if len(made) > count:
            break
    return made


def constraints_kept(consumer: dict, producer: dict, where: str, problems: list) -> None:
    """Every bound a consumer's JSON Schema sets, the producer's sets at least as tightly,
    and the producer never sends null where the consumer takes no null."""
    consumer, producer = _resolved(consumer), _resolved(producer)
    for key, tighter in BOUNDS.items():
        if key in consumer and not (key in producer and tighter(producer[key], consumer[key])):
            problems.append(
                f"{where}: the consumer wants {key} {consumer[key]}, the producer "
                f"promises {producer.get(key, 'nothing')}"
            )
    if _nullable(producer) and not _nullable(consumer) and "default" not in consumer:
        problems.append(f"{where}: the producer may send null, the consumer takes none")
    for name, sub in _properties(consumer).items():
        if name in _properties(producer):
            constraints_kept(sub, _properties(producer)[name], f"{where}.{name}", problems)
    if "items" in _resolved(consumer) and "items" in producer:
        constraints_kept(consumer["items"], producer["items"], f"{where}[]", problems)


BOUNDS = {
    "minimum": lambda have, want: have >= want,
    "exclusiveMinimum": lambda have, want: have >= want,
    "minLength": lambda have, want: have >= want,
    "minItems": lambda have, want: have >= want,
    "maximum": lambda have, want: have <= want,
    "maxLength": lambda have, want: have <= want,
    "maxItems": lambda have, want: have <= want,
}
DEFS: dict = {}


def _resolved(schema: dict) -> dict:
    if "$ref" in schema:
        return _resolved(DEFS[schema["$ref"].rsplit("/", 1)[1]])
    options = [_resolved(s) for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return (
        {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}} if options else schema
    )


def _nullable(schema: dict) -> bool:
    return any(option.get("type") == "null" for option in schema.get("anyOf", []))


def _properties(schema: dict) -> dict:
    return _resolved(schema).get("properties", {})


def schema_of(model, mode):
    schema = model.model_json_schema(mode=mode, ref_template="#/$defs/{model}")
    DEFS.update(schema.pop("$defs", {}))
    return schema


def routed(pattern: str, event_type: str) -> bool:
    """AMQP topic matching for the patterns the shop uses (`*`: one word, `#`: any)."""
    return fnmatch.fnmatchcase(event_type, pattern.replace("#", "*"))


def test_each_event_has_one_producer():
    types = [event.TYPE for service in CATALOG for event in service.publishes]
    assert len(types) == len(set(types))


@pytest.mark.parametrize(
    ("service", "queue", "event_type", "model"),
    EVENT_READS,
    ids=[f"{s.name}:{q}:{e}" for s, q, e, _ in EVENT_READS],
)
def test_what_a_producer_announces_is_what_each_consumer_reads(service, queue, event_type, model):
    assert event_type in PUBLISHED, f"{service.name} reads {event_type}, which nobody announces"
    _producer, event = PUBLISHED[event_type]
    for example in instances(event):
        envelope = Envelope.new(event_type, example.body(), correlation_id="c", app_id="test")
        envelope.body_as(model)  # PoisonMessage (a failure here) if they disagree
    problems: list[str] = []
    constraints_kept(
        schema_of(model, "validation"), schema_of(event, "serialization"), event_type, problems
    )
    assert problems == []


@pytest.mark.parametrize("queue", [q for q in TOPOLOGY.queues if q.bindings], ids=str)
def test_a_queue_reads_exactly_what_its_bindings_route_to_it(queue):
    owner = CATALOG.get(queue.owner)
    reads = set(owner.reads.get(queue.name, {}))
    arrive = {t for t in PUBLISHED for pattern in queue.bindings if routed(pattern, t)}
    assert arrive - reads == set(), f"{queue.name} is routed events it would dead-letter"
    assert reads - arrive == set(), f"{queue.name} reads events nothing routes to it"


def test_every_announced_event_reaches_a_queue_or_is_a_broadcast():
    bound = {pattern for queue in TOPOLOGY.queues for pattern in queue.bindings}
    for event_type in PUBLISHED:
        reached = any(routed(pattern, event_type) for pattern in bound)
        assert reached or TOPOLOGY.is_broadcast(event_type), f"nobody hears {event_type}"


def test_every_service_consumes_only_its_own_queues():
    for service in CATALOG:
        for queue in service.reads:
            assert TOPOLOGY.queue(queue).owner == service.name


def test_the_asyncapi_document_is_valid_asyncapi_3():
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "tests/contracts/asyncapi-3.0.0.schema.json").read_text())
    document = yaml.safe_load((root / "docs/asyncapi.yaml").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    assert errors == []
