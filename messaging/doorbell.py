"""Waking an outbox's relay the moment an event is committed, instead of polling for it.

Every outbox table has a doorbell. Whoever commits a row into it rings (messaging/outbox.py
does, for every transaction that added one):
- in the same process (a service's consumers, whose relay is a thread beside them): the
  relay's callback is called right after the commit;
- from another process (the web app, whose requests write orders and products):
    PostgreSQL: `NOTIFY outbox_<table>` in the committing transaction, delivered when it
    commits to every process that `LISTEN`s;
    SQLite: a datagram to a socket named after the database file and the table (Linux's
    abstract namespace: nothing on disk), sent after the commit.
The relay listens (a thread of its own for the other processes' rings) and wakes its wait.
A slow poll stays as the safety net: a datagram nobody was bound for, a listener that was
reconnecting, a platform without abstract sockets.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from messaging.connection import Backoff

log = logging.getLogger(__name__)

Wake = Callable[[], None]
_RUNG = "shop_doorbells_rung"  # session.info: the bells this transaction will ring
_LISTENING = "shop_doorbells_listening"  # session.info: its commits are watched
NOTIFY = text("SELECT pg_notify(:channel, '')")
_local: dict[str, list[Wake]] = defaultdict(list)  # bell -> the relays of this process
_local_lock = threading.Lock()


class Doorbell:
    def __init__(self, url: str, table: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.postgresql = parsed.get_backend_name() == "postgresql"
        self.table = table
        self.channel = f"outbox_{table}"  # PostgreSQL's NOTIFY channel
        where = parsed.database or ""
        # One bell per outbox table of one database: the SQLite file, or the server's database.
        self.key = hashlib.sha1(f"{parsed.get_backend_name()}:{where}:{table}".encode()).hexdigest()
        self.address = f"\0rabbit-shop-outbox-{self.key[:24]}"  # SQLite: the abstract socket

    @classmethod
    def of(cls, engine: Engine, table: str) -> Doorbell:
        return cls(engine.url.render_as_string(hide_password=False), table)

    def ring_after_commit(self, session: Session) -> None:
        """Ring once the caller's transaction commits (nothing if it rolls back)."""
        rung = session.info.setdefault(_RUNG, {})
        if self.key in rung:
            return
        rung[self.key] = self
        if not session.info.get(_LISTENING):  # once per session, for all its transactions
            session.info[_LISTENING] = True
            event.listen(session, "before_commit", _notify_postgresql)
            event.listen(session, "after_commit", _ring_all)
            event.listen(session, "after_rollback", _forget_all)

    def ring_here(self) -> None:
        with _local_lock:
            wakes = list(_local.get(self.key, ()))
        for wake in wakes:
            wake()
        if not self.postgresql:
            # Nobody may listen (no relay runs), or the platform has no abstract sockets.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender, suppress(OSError):
                sender.sendto(b"!", self.address)

    def listen(self, wake: Wake, stop: threading.Event) -> threading.Thread:
        """Call `wake` on every ring, from this process and others, until `stop`."""
        with _local_lock:
            _local[self.key].append(wake)
        thread = threading.Thread(
            target=self._listen, args=(wake, stop), name=f"doorbell {self.table}", daemon=True
        )
        thread.start()
        return thread

    def _listen(self, wake: Wake, stop: threading.Event) -> None:
        try:
            backoff = Backoff(base=0.5, cap=10.0)
            while not stop.is_set():
                try:
                    if self.postgresql:
                        self._listen_postgresql(wake, stop)
                    else:
                        self._listen_socket(wake, stop)
                        return
                except Exception as error:  # the database restarts, say: listen again soon
                    delay = backoff.next_delay()
                    log.info("doorbell %s: %s; listening again in %.1f s", self.table, error, delay)
                    stop.wait(delay)
        finally:
            with _local_lock:
                _local[self.key].remove(wake)

    def _listen_socket(self, wake: Wake, stop: threading.Event) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            try:
                listener.bind(self.address)
            except OSError as error:  # another relay has it, or no abstract sockets here
                log.info("doorbell %s: not bound (%s); the relay polls", self.table, error)
                return
            listener.settimeout(0.5)
            while not stop.is_set():
                try:
                    listener.recv(16)
                except TimeoutError:
                    continue
                wake()

    def _listen_postgresql(self, wake: Wake, stop: threading.Event) -> None:
        import psycopg

        conninfo = self._conninfo()
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'LISTEN "{self.channel}"')
            while not stop.is_set():
                for _notice in connection.notifies(timeout=0.5, stop_after=1):
                    wake()

    def _conninfo(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)


# SQLAlchemy calls these for a SAVEPOINT's release and rollback too: only the transaction's
# own end counts.


def _notify_postgresql(session: Session) -> None:
    """NOTIFY is transactional: PostgreSQL delivers it when this commit succeeds (sent just
    before the commit, not when the row was added, so a savepoint rolled back since cannot
    take it along)."""
    if session.in_nested_transaction():
        return
    for bell in session.info.get(_RUNG, {}).values():
        if bell.postgresql:
            session.connection().execute(NOTIFY, {"channel": bell.channel})


def _ring_all(session: Session) -> None:
    if session.in_nested_transaction():
        return
    for bell in session.info.pop(_RUNG, {}).values():
        bell.ring_here()


def _forget_all(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info.pop(_RUNG, None)
