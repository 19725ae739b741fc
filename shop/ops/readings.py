"""What the pipeline holds right now, read through the catalog: every queue of the topology,
every service's outbox backlog, the messages each has handled, and each service's own
probes (the SMS backlog, the flash-sale counters).

The services' databases are read with read-only engines, made once per database URL on
first use (services may share one database). Each service's tables are found through its
catalog entry (its outbox and inbox models), never by a name written here. A database
that is down or not migrated reads as None for that service, never as an error.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from messaging import pipeline
from messaging.service import Service
from shop.catalog import CATALOG, Catalog, ShopSettings

log = logging.getLogger(__name__)


class PipelineReader:
    def __init__(self, settings: ShopSettings, catalog: Catalog = CATALOG) -> None:
        self.settings = settings
        self.catalog = catalog
        self.topology = catalog.topology(settings)
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, service: Service) -> Engine:
        url = self.settings.of(service.name).database_url
        with self._lock:
            if url not in self._engines:
                self._engines[url] = pipeline.read_only_engine(url)
            return self._engines[url]

    def queues(self) -> list[pipeline.QueueStatus]:
        """Every work and dead-letter queue, read as the monitoring user (MONITORING_AMQP_URL,
        else AMQP_URL); raises BrokerUnavailable if nothing answers."""
        return pipeline.read_queues(
            self.settings.monitoring_url, self.topology, self.settings.rabbitmq_management_url
        )

    def outbox_backlogs(self) -> dict[str, int | None]:
        return pipeline.outbox_backlogs(self._tables("outbox"))

    def handled_messages(self) -> dict[str, dict[str, int] | None]:
        return pipeline.handled_messages(self._tables("inbox"))

    def probes(self) -> dict[str, dict[str, Any] | None]:
        """{probe name: what it read}, every service's probes; None where its database does
        not answer."""
        readings: dict[str, dict[str, Any] | None] = {}
        for service in self.catalog:
            for probe in service.probes:
                try:
                    with Session(self.engine(service)) as session:
                        readings[probe.name] = probe.read(session)
                except SQLAlchemyError as error:
                    log.warning("%s: cannot read %s (%s)", service.package, probe.name, error)
                    readings[probe.name] = None
        return readings

    def metrics_of_probes(self, readings: dict[str, dict[str, Any] | None]) -> list:
        """The metric families of every probe that could be read."""
        families = []
        for service in self.catalog:
            for probe in service.probes:
                reading = readings.get(probe.name)
                if reading is not None:
                    families += probe.metrics(reading)
        return families

    def _tables(self, kind: str) -> dict[str, tuple[Engine, str]]:
        """{service package: (engine, its outbox or inbox table's name)}."""
        return {
            service.package: (
                self.engine(service),
                getattr(service, kind).__tablename__,  # type: ignore[attr-defined]
            )
            for service in self.catalog
        }

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
