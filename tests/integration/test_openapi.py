"""The HTTP API keeps the promises of its OpenAPI document: schemathesis generates requests
for every documented operation from /openapi.json (a bounded number each) and sends them to
the real web app, with every service running against the real broker. No answer is a 5xx,
and every answer (status, content type, headers, body) is one the document describes.
The document itself is valid OpenAPI 3.1 (schemathesis refuses one that is not)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shop.web import create_app
from tests.support.flash_sales import start_services
from tests.support.orders import ADMIN, a_product
from tests.support.pipeline import pipeline_settings

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def shop(tmp_path_factory, broker):
    """One running shop for the whole module (starting one per example would take minutes)."""
    from tests.support.threads import Running

    vhost = broker.create_vhost("openapi")
    tmp_path = tmp_path_factory.mktemp("openapi")
    settings = pipeline_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", broker.url_for(vhost))
    running: list[Running] = []
    start_services(lambda target: running.append(Running(target)) or running[-1], settings)
    app = create_app(settings)
    client = app.test_client()
    assert client.post("/api/products", json=a_product("TEA-1"), headers=ADMIN).status_code == 201
    yield app
    app.extensions["shop"].flash_sales.close()
    for item in running:
        item.close()
    broker.delete_vhost(vhost)


def test_every_answer_is_one_the_document_describes(shop):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", shop)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16, "every documented operation is tried"
    failures: dict[str, str] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same requests every run: a failure is reproducible
            database=None,
        )
        def answers_as_documented(case):
            case.call_and_validate(headers=ADMIN, checks=CHECKS)

        try:
            answers_as_documented()
        except Exception as failure:  # one report for every operation that broke its promise
            failures[operation.label] = str(failure)[:2000]
    assert failures == {}
