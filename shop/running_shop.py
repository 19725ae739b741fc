"""`shop up` as a real process, for whatever drives the whole product over HTTP (the
integration tests, `shop chaos`): its own working directory (so var/ is fresh), the broker
and databases it is given, a free port, logs in a file; stopped with SIGTERM at the end.
It starts empty (SHOP_DEMO_DATA=0) unless told `SHOP_DEMO_DATA="1"`: whoever drives it
makes the products its checks count on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from shop.local_servers import free_port, wait_until


@dataclass
class RunningShop:
    process: subprocess.Popen
    base: str
    log: Path
    workdir: Path

    def log_text(self) -> str:
        return self.log.read_text()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:  # refused, or too slow to answer yet
        return False


@contextmanager
def running_shop(
    workdir: Path, amqp_url: str, *up_args: str, **environment: str
) -> Iterator[RunningShop]:
    """`shop up UP_ARGS...` in `workdir`, on `amqp_url`, with `environment` added."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SHOP_ADMIN_TOKEN"}
    env.update(
        AMQP_URL=amqp_url,
        SHOP_HTTP_PORT=str(port),
        PYTHONUNBUFFERED="1",
        SHOP_DEMO_DATA="0",
    )
    env.update(environment)
    log = workdir / "shop-up.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "shop", "up", *up_args],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    shop = RunningShop(process, f"http://127.0.0.1:{port}", log, workdir)
    try:
        wait_until(lambda: answers(shop.base + "/healthz"), timeout=60, what="the web app")
        yield shop
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
