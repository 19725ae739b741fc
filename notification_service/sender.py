"""The SMS sender: claim, commit, send, record. No network I/O inside a transaction.

The consumer only stores each SMS PENDING (handlers.py). This worker, a thread of the
notification process, delivers them:

  1. claim: in one short transaction, take the due PENDING rows and move their
     `next_attempt_at` one lease ahead (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so two
     notification processes share the work without taking the same row); commit;
  2. send: each SMS to the gateway, outside any transaction, with the event's message id
     as its idempotency key;
  3. record: in one short transaction, SENT and the `notification.sms_sent` event; or a
     failure: `attempts` + 1, the error kept, and the next attempt after an exponential
     backoff with jitter and a cap; a permanent refusal ends FAILED with a
     `notification.sms_failed` event.

A sender asked to stop, or half-way through its lease, hands the rest of its batch back
unsent in step 3. A crash (or a failed record) between 2 and 3 leaves the row PENDING:
when its lease runs out it is sent again with the same key, and a gateway that honours
the key delivers it once. Only the update that turns a row from PENDING to SENT (or
FAILED) adds the event, so however often an SMS is sent, its event is announced once.

The worker does not poll busily: it waits on an Event that the consumer sets after a
commit that stored an SMS, with a timed wait as the safety net (and to wake for retries).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from messaging import batch_writes
from messaging.connection import Backoff
from messaging.database import (
    make_read_session_factory,
    make_session_factory,
    supports_skip_locked,
)
from messaging.outbox import utcnow
from notification_service.events import SmsFailed, SmsSent, outbox
from notification_service.gateway import SmsGateway, SmsRefused
from notification_service.models import FAILED, PENDING, SENT, Sms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """A claimed SMS, held by this sender until `lease_ends`."""

    id: str
    key: str  # the message id of the event the SMS answers: the gateway's Idempotency-Key
    event: str
    order_id: str | None
    phone: str
    text: str
    attempts: int
    lease_ends: datetime


@dataclass(frozen=True)
class Attempt:
    delivery: Delivery
    error: str | None = None  # None: the gateway took the SMS
    permanent: bool = False  # the gateway refused it for good


@dataclass(frozen=True)
class Pass:
    claimed: int
    next_retry: datetime | None  # the earliest retry this pass scheduled


class SmsSender:
    def __init__(
        self,
        *,
        engine: Engine,
        gateway: SmsGateway,
        name: str = "sms sender",
        batch_size: int = 20,
        lease: float = 60.0,
        idle_wait: float = 1.0,
        retry_base: float = 1.0,
        retry_cap: float = 300.0,
    ) -> None:
        self.gateway = gateway
        self.name = name
        self.batch_size = batch_size
        self.lease = lease  # must be well above the gateway's timeout
        self.idle_wait = idle_wait
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._sessions = make_session_factory(engine)
        self._read_sessions = make_read_session_factory(engine)  # an idle look locks nothing
        self._due = DUE.limit(batch_size)
        if supports_skip_locked(engine):
            self._due = self._due.with_for_update(skip_locked=True)
        self._wakeup = threading.Event()
        self._stop = threading.Event()

    def wake(self) -> None:
        """An SMS was committed: look now rather than at the next timed look."""
        self._wakeup.set()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        trouble = Backoff(base=0.5, cap=10.0)
        while not stop.is_set():
            self._wakeup.clear()  # a wake from here on means "look again"
            try:
                done = self.send_due()
            except DBAPIError as error:  # locked, restarting, unreachable: it will pass
                delay = trouble.next_delay()
                log.warning(
                    "%s cannot use its database (%s); retrying in %.1f s",
                    self.name,
                    error.orig,
                    delay,
                )
                stop.wait(delay)
                continue
            trouble.reset()
            if done.claimed < self.batch_size:  # a full batch: more may be due at once
                self._wakeup.wait(self._idle_seconds(done.next_retry))
        log.info("%s stopped", self.name)

    def send_due(self) -> Pass:
        """Claim the due SMS, send them, record the results; one pass."""
        if not self._anything_due():
            return Pass(0, None)
        deliveries = self._claim()
        attempts = []
        for delivery in deliveries:
            if self._stop.is_set() or utcnow() >= delivery.lease_ends - self._half_lease:
                break  # the rest are handed back unsent
            attempts.append(self._send(delivery))
        untried = deliveries[len(attempts) :]
        return Pass(len(deliveries), self._record(attempts, untried) if deliveries else None)

    def _anything_due(self) -> bool:
        with self._read_sessions() as session:
            return session.connection().execute(ANY_DUE, {"now": utcnow()}).first() is not None

    def _claim(self) -> list[Delivery]:
        with self._sessions.begin() as session:
            now, db = utcnow(), session.connection()
            rows = db.execute(self._due, {"now": now}).all()
            lease_ends = now + timedelta(seconds=self.lease)
            if rows:
                db.execute(HOLD, {"ids": [row.id for row in rows], "until": lease_ends})
            return [
                Delivery(
                    row.id,
                    row.event_message_id,
                    row.event,
                    row.order_id,
                    row.phone,
                    row.text,
                    row.attempts,
                    lease_ends,
                )
                for row in rows
            ]

    def _send(self, delivery: Delivery) -> Attempt:
        try:
            self.gateway.send(delivery.key, delivery.phone, delivery.text)
        except SmsRefused as refusal:
            return Attempt(delivery, str(refusal), permanent=True)
        except Exception as error:  # noqa: BLE001 - any failure is retried on the schedule
            return Attempt(delivery, f"{type(error).__name__}: {error}")
        return Attempt(delivery)

    @property
    def _half_lease(self) -> timedelta:
        return timedelta(seconds=self.lease / 2)

    def _record(self, attempts: Sequence[Attempt], untried: Sequence[Delivery]) -> datetime | None:
        """Write the results in one short transaction; the earliest retry scheduled."""
        next_retry = None
        with self._sessions.begin() as session:
            batch_writes.start(session)  # the events go in with one INSERT
            now = utcnow()
            for delivery in untried:  # due again at once, for whichever sender looks first
                _settle(session, delivery, next_attempt_at=now)
            sent = [attempt.delivery for attempt in attempts if attempt.error is None]
            if sent:
                self._record_sent(session, sent, now)
            for attempt in attempts:
                if attempt.error is None:
                    continue
                if attempt.permanent:
                    self._record_refused(session, attempt, now)
                else:
                    retry_at = self._record_failure(session, attempt, now)
                    next_retry = min(next_retry or retry_at, retry_at)
        return next_retry

    def _record_sent(self, session: Session, sent: list[Delivery], now: datetime) -> None:
        """SENT, with one UPDATE for the pass; an event for each SMS this update settled."""
        ids = {"ids": [delivery.id for delivery in sent], "now": now}
        ours = set(session.connection().execute(SENT_NOW, ids).scalars())
        for delivery in sent:
            if delivery.id in ours:  # not settled first by another sender
                outbox.add_event(
                    session,
                    SmsSent(**_about(delivery)),
                    correlation_id=delivery.order_id or delivery.id,
                )

    def _record_refused(self, session: Session, attempt: Attempt, now: datetime) -> None:
        delivery = attempt.delivery
        log.error("%s: SMS %s refused for good: %s", self.name, delivery.id, attempt.error)
        if _settle(
            session,
            delivery,
            status=FAILED,
            attempts=delivery.attempts + 1,
            last_error=attempt.error,
        ):
            outbox.add_event(
                session,
                SmsFailed(**_about(delivery), error=attempt.error or "refused"),
                correlation_id=delivery.order_id or delivery.id,
            )

    def _record_failure(self, session: Session, attempt: Attempt, now: datetime) -> datetime:
        delivery = attempt.delivery
        failures = delivery.attempts + 1
        delay = Backoff(self.retry_base, self.retry_cap, attempt=delivery.attempts).next_delay()
        retry_at = now + timedelta(seconds=delay)
        log.warning(
            "%s: SMS %s not delivered (attempt %d: %s); next attempt in %.1f s",
            self.name,
            delivery.id,
            failures,
            attempt.error,
            delay,
        )
        _settle(
            session,
            delivery,
            attempts=failures,
            last_error=attempt.error,
            next_attempt_at=retry_at,
        )
        return retry_at

    def _idle_seconds(self, next_retry: datetime | None) -> float:
        if next_retry is None:
            return self.idle_wait
        return max(0.0, min(self.idle_wait, (next_retry - utcnow()).total_seconds()))


_sms = Sms.__table__
_due_now = (_sms.c.status == PENDING, _sms.c.next_attempt_at <= bindparam("now"))
# The statements of every pass, built once (Core: several times cheaper than the ORM's).
ANY_DUE = select(_sms.c.id).where(*_due_now).limit(1)
CLAIMED = ("id", "event_message_id", "event", "order_id", "phone", "text", "attempts")
DUE = select(*(_sms.c[name] for name in CLAIMED)).where(*_due_now).order_by(_sms.c.next_attempt_at)
HOLD = (
    update(_sms)
    .where(_sms.c.id.in_(bindparam("ids", expanding=True)))
    .values(next_attempt_at=bindparam("until"))
)
SENT_NOW = (  # only rows still PENDING: another sender may have settled one first
    update(_sms)
    .where(_sms.c.id.in_(bindparam("ids", expanding=True)), _sms.c.status == PENDING)
    .values(status=SENT, sent_at=bindparam("now"), last_error=None)
    .returning(_sms.c.id)
)


def _settle(session: Session, delivery: Delivery, **values: object) -> bool:
    """Update the SMS if it is still PENDING; False if another sender settled it first."""
    changed = session.execute(
        update(Sms)
        .where(Sms.id == delivery.id, Sms.status == PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return changed.rowcount == 1


def _about(delivery: Delivery) -> dict[str, str | None]:
    return {
        "order_id": delivery.order_id,
        "event": delivery.event,
        "phone": delivery.phone,
        "text": delivery.text,
    }
