"""The shop's operations pages, beside the order service's web app: the pipeline dashboard,
`GET /api/pipeline`, `GET /metrics` and the dead-letter replay button. They concern every
service, so they live here with the catalog, not in any one service: they read the broker
and each service's tables and probes through shop/catalog.py.

    readings.py   what the pipeline holds (queues, backlogs, handled messages, probes)
    views.py      /api/pipeline, /dashboard, the replay button
    metrics.py    /metrics with prometheus_client (multiprocess under gunicorn)
"""

from __future__ import annotations

from flask import Flask

from shop.catalog import ShopSettings
from shop.ops import metrics, views
from shop.ops.readings import PipelineReader


def install(app: Flask, settings: ShopSettings) -> None:
    reader = PipelineReader(settings)
    app.extensions[views.EXTENSION] = reader
    app.register_blueprint(views.blueprint)
    metrics.install(app, reader)
