"""`make test` and `make bench` on a fresh machine, whose RabbitMQ has no management API:
the vhosts they make with rabbitmqctl (several per call) are usable over AMQP and are
deleted afterwards, and a management URL that does not answer is not used."""

import shutil
import subprocess
import uuid

import pytest

from tests.support.amqp import declare, publish_raw, queue_depth, wait_until
from tests.support.broker import Broker, find_broker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs a local rabbitmqctl"),
]

NOTHING_LISTENS = "http://127.0.0.1:9/"  # the discard port: connection refused


def vhosts() -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    return set(listed.stdout.split())


def test_a_management_url_that_does_not_answer_is_not_used(broker):
    found = find_broker({"AMQP_URL": broker.amqp_url, "RABBITMQ_MANAGEMENT_URL": NOTHING_LISTENS})
    assert isinstance(found, Broker), found
    assert found.management_url != NOTHING_LISTENS.rstrip("/")  # the default one, or none


def test_without_the_management_api_vhosts_are_made_in_batches_and_all_deleted(broker):
    local = Broker(broker.amqp_url, management_url=None, batch=2)
    prefix = f"vhost-test-{uuid.uuid4().hex[:8]}"  # ours alone, whatever else the broker has
    made = [local.create_vhost(prefix) for _ in range(3)]
    assert len(set(made)) == 3
    for vhost in made:
        url = local.url_for(vhost)
        declare(url)  # every right on it: it can declare the whole topology
        publish_raw(url, "inventory.orders", b"{}")
        assert queue_depth(url, "inventory.orders") == 1
    # Two batches of two were made: one of the second is spare, never handed out.
    spare = {vhost for vhost in vhosts() if vhost.startswith(prefix)} - set(made)
    assert len(spare) == 1

    local.delete_vhost(made[0])
    local.delete_vhost(made[1])  # a full batch: both go, in one call, in the background
    wait_until(lambda: not {made[0], made[1]} & vhosts(), what="the first batch to be deleted")
    assert {made[2]} | spare <= vhosts()

    local.delete_vhost(made[2])
    local.close()  # the one waiting for a batch, and the spare
    assert not (set(made) | spare) & vhosts()
