"""The envelope every message travels in: CONTRACT.md's properties around a JSON body.

`Envelope.new()` makes one for a fresh event; `Envelope.from_delivery()` reads one off the
wire and raises `PoisonMessage` when it can never be handled (not JSON, not an object,
no message_id or type).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pika
from pydantic import BaseModel, ValidationError

Body = TypeVar("Body", bound=BaseModel)

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/json"


def message_properties(
    *,
    message_id: str,
    type: str,
    correlation_id: str,
    app_id: str,
    timestamp: int,
    schema_version: int,
    **extra: Any,
) -> pika.BasicProperties:
    """CONTRACT.md's message properties: persistent JSON, with who sent what, and when."""
    return pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message_id,
        correlation_id=correlation_id,
        type=type,
        timestamp=timestamp,
        app_id=app_id,
        headers={"schema_version": schema_version},
        **extra,
    )


class PoisonMessage(Exception):
    """A message that can never succeed: it is dead-lettered, never retried."""


@dataclass(frozen=True)
class Envelope:
    message_id: str
    type: str
    correlation_id: str
    app_id: str
    body: dict[str, Any]
    timestamp: int = field(default_factory=lambda: int(time.time()))
    schema_version: int = SCHEMA_VERSION
    # Bodies already validated, by model: the consumer's router validates once, and the
    # handler's own body_as() of the same model takes the result from here.
    _validated: dict[type, BaseModel] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def new(
        cls, event_type: str, body: dict[str, Any], *, correlation_id: str, app_id: str
    ) -> Envelope:
        return cls(
            message_id=str(uuid.uuid4()),
            type=event_type,
            correlation_id=correlation_id,
            app_id=app_id,
            body=body,
        )

    def encoded_body(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), sort_keys=True).encode()

    def properties(self, **extra: Any) -> pika.BasicProperties:
        return message_properties(
            message_id=self.message_id,
            type=self.type,
            correlation_id=self.correlation_id,
            app_id=self.app_id,
            timestamp=self.timestamp,
            schema_version=self.schema_version,
            **extra,
        )

    def body_as(self, model: type[Body]) -> Body:
        """The body validated as `model`; a schema violation is poison (it can never succeed)."""
        known = self._validated.get(model)
        if known is not None:
            return known  # type: ignore[return-value]
        try:
            validated = self._validated[model] = model.model_validate(self.body)
            return validated
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
                for item in error.errors(include_url=False)
            )
            raise PoisonMessage(f"{self.type} does not match its schema: {problems}") from None

    @classmethod
    def from_delivery(cls, properties: pika.BasicProperties, body: bytes) -> Envelope:
        if not properties.message_id:
            raise PoisonMessage("the message has no message_id")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PoisonMessage(f"the body is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise PoisonMessage("the body is not a JSON object")
        headers = properties.headers or {}
        return cls(
            message_id=properties.message_id,
            type=properties.type or "",
            correlation_id=properties.correlation_id or "",
            app_id=properties.app_id or "",
            body=data,
            timestamp=properties.timestamp or 0,
            schema_version=int(headers.get("schema_version", SCHEMA_VERSION)),
        )
