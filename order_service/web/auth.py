"""The admin endpoints' guard: `Authorization: Bearer <SHOP_ADMIN_TOKEN>`; none is 401, a
wrong one 403. The token is compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, request

from order_service.web.context import web
from order_service.web.problems import ApiProblem


def admin_only(route: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(route)
    def guarded(*args: Any, **kwargs: Any) -> Response:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ApiProblem(
                401,
                "Unauthorized",
                "This endpoint needs Authorization: Bearer <admin token>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = header.partition(" ")
        expected = web().settings.admin_token
        if (
            scheme.lower() != "bearer"
            or not expected
            or not hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            raise ApiProblem(403, "Forbidden", "The admin token is not valid.")
        return route(*args, **kwargs)

    guarded.admin_only = True  # type: ignore[attr-defined]  # the OpenAPI document says so
    return guarded
