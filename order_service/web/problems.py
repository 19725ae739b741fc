"""RFC 9457 problem+json for every error the web app answers.

Errors a user can cause say exactly what to fix; errors the system causes are logged
with a request id and answered without internals. The order rules raise refusals that
know nothing of HTTP (order_service/errors.py); `status_of` is where each becomes a status.
"""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, g, json, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from messaging.connection import BrokerUnavailable
from order_service.errors import (
    Conflict,
    CouponRefused,
    DomainError,
    InvalidOrder,
    NotFound,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


# What each refusal of the rules is answered with; the most specific class wins.
STATUSES: tuple[tuple[type[DomainError], int, str], ...] = (
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (InvalidOrder, 422, "Invalid order"),
    (ServiceUnavailable, 503, "Service Unavailable"),
    (DomainError, 422, "Invalid request"),
)


def status_of(error: DomainError) -> tuple[int, str]:
    """The HTTP status and title a refusal is answered with."""
    if isinstance(error, CouponRefused):
        return (409 if error.exists else 422), "Coupon refused"
    return next((status, title) for kind, status, title in STATUSES if isinstance(error, kind))


class ApiProblem(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors or []
        self.headers = headers or {}


def wants_html() -> bool:
    """A browser asking for a page (not the API): answer errors with an HTML page."""
    path = request.path
    machine = path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics")
    return not machine and "text/html" in request.headers.get("Accept", "")


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if wants_html():
        page = render_template("error.html", title=title, detail=detail)
        return Response(page, status=status, mimetype="text/html")
    body: dict[str, object] = {
        "type": "about:blank" if not errors else "/problems/validation-error",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def request_id_of_this_request() -> str:
    """The caller's X-Request-ID, or a new id; made only when something is logged."""
    if "request_id" not in g:
        g.request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    return g.request_id


def install(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def on_api_problem(error: ApiProblem) -> Response:
        return problem(error.status, error.title, error.detail, error.errors, error.headers)

    @app.errorhandler(DomainError)
    def on_domain_error(error: DomainError) -> Response:
        status, title = status_of(error)
        return problem(status, title, error.detail, error.errors)

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        details = {
            404: f"Nothing is served at {request.path}.",
            405: f"{request.method} is not allowed on {request.path}.",
            413: "The request body is larger than 64 KiB.",
        }
        detail = details.get(status) or error.description or error.name
        response = problem(status, error.name, detail)
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(BrokerUnavailable)
    def on_broker_unavailable(error: BrokerUnavailable) -> Response:
        log.warning("%s %s without a broker: %s", request.method, request.path, error)
        detail = "The shop cannot reach its message broker right now; nothing was changed."
        return problem(503, "Service Unavailable", detail, headers={"Retry-After": "2"})

    @app.errorhandler(DBAPIError)
    def on_database_error(error: DBAPIError) -> Response:
        if not (error.connection_invalidated or isinstance(error, OperationalError)):
            return on_unexpected(error)  # a bug, not an outage
        log.warning("%s %s without a database: %s", request.method, request.path, error.orig)
        detail = (
            "The shop's database is unavailable right now; try again in a moment "
            "(with the same Idempotency-Key an order is never placed twice)."
        )
        return problem(503, "Service Unavailable", detail, headers={"Retry-After": "2"})

    @app.errorhandler(Exception)
    def on_unexpected(error: Exception) -> Response:
        request_id = request_id_of_this_request()
        log.exception(
            "unhandled error on %s %s",
            request.method,
            request.path,
            extra={"correlation_id": request_id},
        )
        return problem(
            500,
            "Internal Server Error",
            f"Something went wrong on our side; it was logged with id {request_id}.",
        )
