"""What a domain event carries: a pydantic model per event type, named by its `TYPE`.

A service announces an event by adding it to its outbox (`outbox.add_event(session,
OrderConfirmed(...), correlation_id=...)`); the model is the producer's promise of what the
body holds. Consumers read the body with models of their own (a consumer takes only what
it needs), and the contract tests check that every event a producer announces validates
against every consumer's model for it. docs/asyncapi.yaml is generated from these models.

Each model carries an example (its JSON Schema's `examples`), which the contract tests
and the AsyncAPI document use.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    TYPE: ClassVar[str]  # the event's name: its routing key on shop.events and its `type`
    SUMMARY: ClassVar[str] = ""  # one line for the AsyncAPI document

    model_config = ConfigDict(extra="forbid")

    def body(self) -> dict[str, Any]:
        """The JSON body it travels as."""
        return self.model_dump(mode="json")

    @classmethod
    def example(cls) -> Event:
        """The model's first example (every event model has one)."""
        examples = (cls.model_config.get("json_schema_extra") or {}).get("examples")  # type: ignore[union-attr]
        if not examples:
            raise TypeError(f"{cls.__name__} has no example in its model_config")
        return cls.model_validate(examples[0])


def with_example(**example: Any) -> ConfigDict:
    """A model_config for an event model: extra fields forbidden, and this example."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})
