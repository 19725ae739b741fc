"""The Flask app factory: wires settings, the database and the routes; nothing at import time.

The coupon desk, the flash-sale gate's publisher and its broadcast listener are made here
from the settings unless they are given: the unit tests give fakes, so the web layer runs
without a broker. shop/web.py adds the shop's operations pages (dashboard, /metrics) to it.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, send_from_directory

from messaging.background import BackgroundPublisher, BroadcastListener
from messaging.database import make_engine, make_read_session_factory, make_session_factory
from messaging.topology import Topology
from order_service.service import SERVICE
from order_service.settings import OrderSettings
from order_service.tickets import TicketSigner
from order_service.web import api, flash_api, openapi, pages, problems
from order_service.web.admission import AdmissionGate, Listener, Publisher
from order_service.web.context import EXTENSION, CouponService, WebContext

MAX_BODY_BYTES = 64 * 1024


def create_app(
    settings: OrderSettings | None = None,
    *,
    rpc_timeout: float = 3.0,
    coupons: CouponService | None = None,
    publisher: Publisher | None = None,
    listener: Listener | None = None,
) -> Flask:
    from order_service.coupon_client import CouponDesk  # pika, only where it is used

    settings = settings or OrderSettings.from_env()
    engine = make_engine(settings.database_url)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    sessions = make_session_factory(engine)
    read_sessions = make_read_session_factory(engine)
    # Ticket ids are signed; every web process must share the secret (see tickets.py).
    tickets = TicketSigner(settings.admin_token or settings.database_url)
    # The gate publishes into the order service's own queue: its part of the topology is
    # what it declares (as every worker of the service does: messaging/topology.py).
    own_queues = Topology(SERVICE.owned_queues(settings), part=True)
    gate = AdmissionGate(
        sessions,
        tickets,
        publisher or BackgroundPublisher(settings.amqp_url, "flash-sale publisher", own_queues),
        listener
        or BroadcastListener(settings.amqp_url, "flash-sale listener", SERVICE.listens_for),
        read_sessions,
    )
    app.extensions[EXTENSION] = WebContext(
        settings,
        engine,
        sessions,
        read_sessions,
        coupons or CouponDesk(settings.amqp_url, timeout=rpc_timeout),
        gate,
        tickets,
    )
    problems.install(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(flash_api.blueprint)
    app.register_blueprint(pages.blueprint)
    install_api_docs(app)
    return app


def install_api_docs(app: Flask) -> None:
    """`GET /openapi.json` (built from the routes on first use) and `GET /api/docs`."""
    import swagger_ui_bundle

    app.add_url_rule(
        "/api/docs/assets/<path:filename>",
        "api_docs_assets",
        lambda filename: send_from_directory(swagger_ui_bundle.swagger_ui_path, filename),
    )
    built: list[dict] = []

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        if not built:
            built.append(openapi.document(app))
        return jsonify(built[0])

    @app.get("/api/docs")
    def api_docs() -> str:
        return render_template("api_docs.html")
