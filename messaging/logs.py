"""Readable log lines that carry the service, the correlation id and the message id.

    14:02:11 INFO  order_service  corr=5f1c... msg=9a0e...  handled inventory.reserved

Pass them with `extra={"correlation_id": ..., "message_id": ...}`; lines without them
just leave the fields out.
"""

from __future__ import annotations

import logging
import os
import sys

# pika's own lines about a connection it could not make or lost: three ERROR lines for each
# node of AMQP_URL it skipped, on every connection, and two (one a traceback) for every
# connection a broker closed. Each says again what the worker's own line says once
# (messaging/connection.py names the node it reached, messaging/worker.py the loss).
QUIET_PIKA_LOGGERS = (
    "pika.adapters.utils.connection_workflow",
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.blocking_connection",
    "pika.adapters.base_connection",
)


class _ContextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(
            "%(asctime)s %(levelname)-5s %(service)s %(context)s%(message)s", "%H:%M:%S"
        )
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        record.service = self.service
        parts = []
        for field, label in (("correlation_id", "corr"), ("message_id", "msg")):
            value = getattr(record, field, None)
            if value:
                parts.append(f"{label}={value}")
        record.context = (" ".join(parts) + "  ") if parts else " "
        return super().format(record)


def configure_logging(service: str, level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ContextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("SHOP_LOG_LEVEL", "INFO"))
    logging.getLogger("pika").setLevel(logging.WARNING)
    quiet_pika()


def quiet_pika() -> None:
    """Only the shop's own line about a connection that failed (QUIET_PIKA_LOGGERS)."""
    for skipped_node in QUIET_PIKA_LOGGERS:
        logging.getLogger(skipped_node).setLevel(logging.CRITICAL)
