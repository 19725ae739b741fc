"""The shop's web app, as gunicorn runs it (`shop.web:create_app()`): the order service's
app (order_service/web/app.py) with the shop's operations pages added (shop/ops/) and the
labs page (shop/labs/page.py)."""

from __future__ import annotations

import os

from flask import Flask

from messaging.logs import quiet_pika
from order_service.web.app import create_app as create_order_app
from shop import ops
from shop.catalog import CATALOG, ShopSettings
from shop.labs import page as labs_page


def create_app(settings: ShopSettings | None = None, **order_app_options: object) -> Flask:
    settings = settings or CATALOG.settings_from_env()
    quiet_pika()  # a node of AMQP_URL that is down costs one line of ours, not three of pika's
    metrics_directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_directory:  # every gunicorn worker writes its counts there (ops/metrics.py)
        os.makedirs(metrics_directory, exist_ok=True)
    app = create_order_app(settings.of("order"), **order_app_options)  # type: ignore[arg-type]
    ops.install(app, settings)
    app.register_blueprint(labs_page.blueprint)
    return app
