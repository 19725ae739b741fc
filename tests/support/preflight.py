"""`make test`'s first step: make sure the RabbitMQ management API answers, since every
test makes a vhost of its own and the API does that in milliseconds (`rabbitmqctl` starts
an Erlang VM per call, seconds each, which on two cores starves the broker itself).

A fresh install of the distribution's RabbitMQ has the plugin off. Where the broker runs
on this machine and `rabbitmq-plugins` may change it, this enables it and says so in one
line; otherwise it says, in one line, that vhosts will be made the slow way. It never
fails the run: the tests then find what there is (shop/vhosts.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from messaging.management import ENABLE_MANAGEMENT, find_management_api
from messaging.settings import DEFAULT_AMQP_URL

WAIT_SECONDS = 60


def main() -> int:
    amqp_url = os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)
    override = os.environ.get("RABBITMQ_MANAGEMENT_URL")
    if find_management_api(amqp_url, override) is not None:
        return 0
    if shutil.which("rabbitmq-plugins") is None:
        return say("no management API answers and there is no local rabbitmq-plugins")
    print(f"make test: enabling the RabbitMQ management plugin ({ENABLE_MANAGEMENT})", flush=True)
    try:
        enabled = subprocess.run(
            ["rabbitmq-plugins", "enable", "--quiet", "rabbitmq_management"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return say("rabbitmq-plugins did not finish in 120 s")
    if enabled.returncode != 0:
        reason = " ".join((enabled.stderr or enabled.stdout).split())[:200]
        return say(f"rabbitmq-plugins refused ({reason})")
    deadline = time.monotonic() + WAIT_SECONDS
    while find_management_api(amqp_url, override) is None:
        if time.monotonic() >= deadline:
            return say(f"the management API did not answer within {WAIT_SECONDS} s")
        time.sleep(1)
    return 0


def say(why: str) -> int:
    print(
        f"make test: {why}; the tests make their vhosts with rabbitmqctl instead, which is "
        f"much slower (`{ENABLE_MANAGEMENT}` as root to speed them up)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
