"""The HTTP API as an OpenAPI 3.1 document, generated from the routes and their models.

Each API route says what it takes and answers with `@documented(...)`, naming the same
pydantic models it parses its input with (order_service/commands.py) and answers with
(web/serializers.py). `document(app)` walks the app's URL map and builds the paths; pydantic
writes the JSON Schemas (JSON Schema 2020-12, which OpenAPI 3.1 uses as it is). The web
app serves it at `GET /openapi.json`, and `GET /api/docs` shows it with Swagger UI, whose
files come from the swagger-ui-bundle-v2 package: the page asks nothing of any other site.

What every route may answer is added by the rules below, so a route lists only its own
answers: a JSON body brings 400, 413, 415 and 422; a query brings 422; an admin route
401 and 403; every route may answer 503 (a database or the broker is unavailable).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

PROBLEM_TYPE = "application/problem+json"
VERSION = "1.0.0"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An error, RFC 9457: what went wrong and, for invalid input, which fields."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    description: str
    model: type[BaseModel] | None = None  # None: a problem (status >= 400) or no body
    many: bool = False  # a JSON array of `model`
    headers: tuple[str, ...] = ()  # e.g. "Location", "Retry-After"
    media_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: tuple[Answer, ...]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (name, description) of request headers
    tag: str = "shop"
    admin: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def documented(
    summary: str,
    *answers: Answer,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    tag: str = "shop",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach an Operation to a view function (put it above @admin_only, if any)."""

    def attach(view: Callable[..., Any]) -> Callable[..., Any]:
        view.openapi = Operation(  # type: ignore[attr-defined]
            summary,
            answers,
            body,
            query,
            tuple(headers),
            tag,
            admin=getattr(view, "admin_only", False),
        )
        return view

    return attach


COMMON_ANSWERS = {
    400: "The body is not valid JSON, or a header is malformed.",
    401: "No admin token was given.",
    403: "The admin token is not valid.",
    413: "The body is larger than 64 KiB.",
    415: "The body is not sent as JSON.",
    422: "Invalid input; `errors` names each field and what is wrong with it.",
    503: "A database or the message broker is unavailable; nothing was changed.",
}


def document(app: Flask, title: str = "Rabbit Shop API") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route of `app`."""
    operations: list[tuple[str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if operation is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations.append((_path(rule.rule), method.lower(), operation))
    schemas, refs = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation in sorted(operations, key=lambda o: (o[0], o[1])):
        paths.setdefault(path, {})[method] = _operation(path, operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": VERSION,
            "description": "The order pipeline's HTTP API (docs/contract.md).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path(rule: str) -> str:
    """Flask's /api/orders/<order_id> as OpenAPI's /api/orders/{order_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _schemas(operations: list[tuple[str, str, Operation]]) -> tuple[dict, dict]:
    """Every model's JSON Schema under #/components/schemas; and {(model, mode): its $ref}."""
    wanted: dict[tuple[type[BaseModel], str], None] = {(Problem, "serialization"): None}
    for *_where, operation in operations:
        if operation.body is not None:
            wanted[(operation.body, "validation")] = None
        for answer in operation.answers:
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    refs, top = models_json_schema(
        list(wanted),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    return top.get("$defs", {}), refs


def _operation(path: str, operation: Operation, refs: dict) -> dict[str, Any]:
    answers = {answer.status: answer for answer in operation.answers}
    implied = [503]
    if operation.body is not None:
        implied += [400, 413, 415, 422]
    if operation.query is not None:
        implied.append(422)
    if operation.admin:
        implied += [401, 403]
    if any(name == "Idempotency-Key" for name, _ in operation.headers):
        implied.append(400)
    for status in implied:
        answers.setdefault(status, Answer(status, COMMON_ANSWERS[status]))
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": _parameters(path, operation),
        "responses": {str(status): _response(answers[status], refs) for status in sorted(answers)},
    }
    if operation.body is not None:
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(operation.body, "validation")]}},
        }
    if operation.admin:
        spec["security"] = [{"admin": []}]
    return spec


def _parameters(path: str, operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{([^}]+)}", path)
    ]
    for name, description in operation.headers:
        parameters.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "description": description,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        )
    if operation.query is not None:
        schema = operation.query.model_json_schema(mode="validation")
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    return parameters


def _response(answer: Answer, refs: dict) -> dict[str, Any]:
    response: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        schema = refs[(answer.model, "serialization")]
        if answer.many:
            schema = {"type": "array", "items": schema}
        response["content"] = {answer.media_type: {"schema": schema}}
    elif answer.status >= 400:
        response["content"] = {PROBLEM_TYPE: {"schema": refs[(Problem, "serialization")]}}
    elif answer.media_type != "application/json":
        response["content"] = {answer.media_type: {"schema": {"type": "string"}}}
    if answer.headers:
        response["headers"] = {
            name: {"schema": {"type": "string"}, "required": True} for name in answer.headers
        }
    return response
