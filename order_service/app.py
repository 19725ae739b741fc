"""The Flask app factory: wires settings, the database and the routes; nothing at import time."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from messaging.database import make_engine, make_read_session_factory, make_session_factory
from messaging.settings import Settings
from order_service import api, flash_api, ops, pages, problems
from order_service.admission import AdmissionGate
from order_service.coupons import CouponDesk
from order_service.flash_sale import TicketSigner

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]  # for reads: on SQLite they take no write lock
    coupons: CouponDesk
    flash_sales: AdmissionGate
    tickets: TicketSigner


def create_app(settings: Settings | None = None, *, rpc_timeout: float = 3.0) -> Flask:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.order_database_url)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    sessions = make_session_factory(engine)
    read_sessions = make_read_session_factory(engine)
    # Ticket ids are signed; every web process must share the secret (see flash_sale.py).
    tickets = TicketSigner(settings.admin_token or settings.order_database_url)
    app.extensions["shop"] = WebContext(
        settings,
        engine,
        sessions,
        read_sessions,
        CouponDesk(settings.amqp_url, timeout=rpc_timeout),
        AdmissionGate(settings, sessions, tickets, read_sessions),
        tickets,
    )
    problems.install(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(flash_api.blueprint)
    app.register_blueprint(pages.blueprint)
    ops.install(app, settings)
    return app
