"""Reading a request: its JSON body or query string as a command model (415 not JSON, 400
malformed, 422 naming each invalid field) and its Idempotency-Key."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from messaging.validation import field_errors
from order_service.web.problems import ApiProblem

Model = TypeVar("Model", bound=BaseModel)
MAX_IDEMPOTENCY_KEY = 200


def read_body(model: type[Model]) -> tuple[Model, dict[str, Any]]:
    """The body as `model`: 415 if not JSON, 400 if malformed, 422 if invalid."""
    if not request.is_json:
        raise ApiProblem(
            415,
            "Unsupported Media Type",
            "Send the body as JSON with the header Content-Type: application/json.",
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiProblem(400, "Malformed JSON", f"The body is not valid JSON: {error}.") from None
    try:
        return model.model_validate(data), data
    except ValidationError as error:
        raise ApiProblem(
            422, "Invalid request", "The request has invalid fields.", field_errors(error)
        ) from None


def read_query(model: type[Model]) -> tuple[Model, dict[str, Any]]:
    """The query string as `model`: 422 naming the parameter when it is invalid."""
    data = request.args.to_dict()
    try:
        return model.model_validate(data), data
    except ValidationError as error:
        raise ApiProblem(
            422, "Invalid request", "The query has invalid parameters.", field_errors(error)
        ) from None


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ApiProblem(
            400,
            "Bad Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters.",
        )
    return key
