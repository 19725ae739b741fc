"""The relay does not poll: an event committed in this process or in another one (as the web
app commits orders) is published within a moment, though the relay's safety poll is a
minute away. Against the real broker, on SQLite (a datagram) and PostgreSQL (NOTIFY)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from messaging.database import make_session_factory
from order_service.events import outbox
from tests.support.amqp import take_all
from tests.support.orders import migrated_outbox, relay_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUEUE = "inventory.orders"  # bound to order.created
A_MINUTE = 60.0


def write_event(engine, n: int) -> None:
    with make_session_factory(engine).begin() as session:
        outbox.add(session, "order.created", {"n": n}, correlation_id="c")


def write_event_in_another_process(database_url: str, n: int) -> None:
    script = textwrap.dedent(
        f"""
        from messaging.database import make_engine, make_session_factory
        from order_service.events import outbox
        engine = make_engine({database_url!r})
        with make_session_factory(engine).begin() as session:
            outbox.add(session, "order.created", {{"n": {n}}}, correlation_id="c")
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)


def test_a_commit_rings_the_relay_awake_in_this_process_and_from_another(
    database_url, amqp_url, start_in_thread
):
    with migrated_outbox(database_url, amqp_url) as engine:
        write_event(engine, 0)
        start_in_thread(relay_for(engine, amqp_url, poll_interval=A_MINUTE))
        take_all(amqp_url, QUEUE, 1, timeout=30)  # connected, drained: waiting for the bell

        write_event(engine, 1)  # take_all waits 10 s at most: only the bell can be that quick
        (here,) = take_all(amqp_url, QUEUE, 1, timeout=10)
        write_event_in_another_process(database_url, 2)
        (there,) = take_all(amqp_url, QUEUE, 1, timeout=10)
        assert (here.body, there.body) == (b'{"n":1}', b'{"n":2}')
