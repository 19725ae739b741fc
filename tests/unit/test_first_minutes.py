"""What a new user meets first, without a broker: the SHOP_DEMO_DATA setting, where the demo
loader finds the web app and what it says when it cannot load (against a small HTTP server
standing for the web app), the dashboard's reading of a missing management API, and a lab
for every queue of the catalog."""

import threading

import pytest

from messaging.pipeline import QueueStatus
from messaging.settings import SettingsError
from shop import demo
from shop.catalog import CATALOG
from shop.local_servers import free_port
from shop.ops.views import QUEUE_LABS, lab_of, read_through_management


@pytest.mark.parametrize("value", ["", "1", "true", "Yes", "on"])
def test_demo_data_is_on_unless_the_setting_says_otherwise(value):
    assert demo.wanted({"SHOP_DEMO_DATA": value}) is True
    assert demo.wanted({}) is True


@pytest.mark.parametrize("value", ["0", "false", "NO", "off"])
def test_shop_demo_data_0_turns_it_off(value):
    assert demo.wanted({"SHOP_DEMO_DATA": value}) is False


def test_a_value_it_does_not_know_is_a_configuration_error_naming_the_variable():
    with pytest.raises(SettingsError, match="SHOP_DEMO_DATA must be 1 or 0"):
        demo.wanted({"SHOP_DEMO_DATA": "maybe"})


def test_the_loader_reaches_a_web_app_on_a_wildcard_address_on_loopback():
    assert demo.web_app_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert demo.web_app_url("::", 8000) == "http://[::1]:8000"
    assert demo.web_app_url("shop.local", 80) == "http://shop.local:80"


def test_every_queue_of_the_catalog_links_to_a_lab_and_every_dead_letter_queue_to_poison():
    names = [queue.name for queue in CATALOG.topology().queues]
    assert sorted(QUEUE_LABS) == sorted(names)
    assert all(lab_of(f"{name}.dead", dead=True) == "poison" for name in names)


def status(name, ready, unacked):
    return QueueStatus(name=name, ready=ready, unacked=unacked, consumers=0, dead=False)


def test_figures_without_unacked_mean_no_management_api_and_no_queue_means_nothing_known():
    assert read_through_management([status("a", 3, 0), status("b", None, None)]) is True
    assert read_through_management([status("a", 3, None), status("b", 0, None)]) is False
    assert read_through_management([status("a", None, None)]) is None


class FakeShop:
    """A web app that answers like the shop's API, with a coupon service that never does."""

    def __init__(self):
        from flask import Flask, jsonify, request
        from werkzeug.serving import make_server

        app = Flask(__name__)
        self.created: list[str] = []

        @app.get("/healthz")
        def healthz():
            return jsonify(status="ok")

        @app.get("/api/products")
        def products():
            return jsonify([])

        @app.post("/api/<kind>")
        def create(kind):
            assert request.headers["Authorization"] == "Bearer secret"
            if kind == "coupons":
                return jsonify(detail="The coupon service did not answer in time."), 503
            self.created.append(kind)
            return jsonify(request.get_json()), 201

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_coupon_service_that_never_answers_is_said_in_the_line_and_stops_nothing(monkeypatch):
    monkeypatch.setattr(demo, "WAIT_SECONDS", 1.5)
    shop = FakeShop()
    try:
        lines = []
        demo.load_in_background(shop.url, "secret", lines.append).join(timeout=30)
    finally:
        shop.server.shutdown()
    assert shop.created == ["products"] * 4 + ["flash-sales"]
    (line,) = lines
    assert line.startswith("shop: loaded the demo catalog: 4 products, a flash sale opening at ")
    assert "but not the coupon WELCOME (POST /api/coupons answered 503: The coupon service" in line


def test_a_web_app_that_never_answers_is_said_in_one_line(monkeypatch):
    monkeypatch.setattr(demo, "WAIT_SECONDS", 1.0)
    lines = []
    nowhere = f"http://127.0.0.1:{free_port()}"
    demo.load_in_background(nowhere, "secret", lines.append).join(timeout=30)
    assert lines == [
        "shop: could not load the demo catalog: the web app did not answer within 1 s "
        "(SHOP_DEMO_DATA=0 to start empty)"
    ]
