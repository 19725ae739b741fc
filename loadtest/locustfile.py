"""A flash-sale spike for Locust: many distinct customers buy at once, each polls its ticket.

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8000 \\
        --csv var/flash --users 2000 --spawn-rate 2000 --run-time 30s

Each simulated user is one customer (its own phone number): it POSTs one purchase; on 202
it polls its ticket's status_url until WON or LOST (at most MAX_POLLS times, POLL_WAIT
apart); on 429 it waits the Retry-After once and tries once more. Then it idles until the
test ends. 202, 409, 410 and 429 are all answers the contract promises under load, so they
count as successes; anything else (5xx, a timeout) is a failure.

The sale: `--sale-id ID` (or FLASH_SALE_ID) names one made beforehand (README, "Load
tests"); without it, SHOP_ADMIN_TOKEN lets the locustfile create a product and a sale at
test start (quota `--sale-quota`, default 100). In a distributed run, make the sale first
and give every worker its id.

SpikeShape: ramp to --users within RAMP_SECONDS, hold until --run-time (default 30 s), stop.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request

import gevent
from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.runners import WorkerRunner

MAX_POLLS = 60
POLL_WAIT = 0.5  # seconds between two looks at a ticket
RETRY_AFTER_CAP = 10.0
RAMP_SECONDS = 1.0
DEFAULT_HOLD_SECONDS = 30
EXPECTED = {202, 409, 410, 429}  # the contract's answers to a purchase under load

log = logging.getLogger("flash-sale")
_numbers = itertools.count()
_run = secrets.randbelow(10_000)  # keeps phones distinct across processes and runs
sale = {"id": ""}


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument(
        "--sale-id",
        type=str,
        env_var="FLASH_SALE_ID",
        default="",
        help="the flash sale to buy from (else one is made with SHOP_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--sale-quota",
        type=int,
        env_var="FLASH_SALE_QUOTA",
        default=100,
        help="the quota of the sale the locustfile makes when no --sale-id is given",
    )


@events.init.add_listener
def _check(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    if not options.sale_id and not os.environ.get("SHOP_ADMIN_TOKEN"):
        sys.stderr.write(
            "flash-sale locustfile: give --sale-id (or FLASH_SALE_ID), or set "
            "SHOP_ADMIN_TOKEN so that a sale can be made at test start\n"
        )
        sys.exit(2)


@events.test_start.add_listener
def _make_sale(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    options = environment.parsed_options
    if options is not None and options.sale_id:
        sale["id"] = options.sale_id
        return
    if isinstance(environment.runner, WorkerRunner):
        return
    token = os.environ["SHOP_ADMIN_TOKEN"]
    host = (environment.host or "http://127.0.0.1:8000").rstrip("/")
    sku = f"SPIKE-{secrets.token_hex(4).upper()}"
    quota = options.sale_quota if options is not None else 100
    product = {"sku": sku, "name": sku, "price_cents": 19900, "stock": quota}
    try:
        _admin_post(host, token, "/api/products", product)
        made = _admin_post(
            host, token, "/api/flash-sales", {"sku": sku, "price_cents": 100, "quota": quota}
        )
        _wait_open(host, made["id"])
    except RuntimeError as error:
        log.error("%s", error)
        environment.process_exit_code = 2
        gevent.spawn(environment.runner.quit)
        return
    sale["id"] = made["id"]
    log.info("made flash sale %s of %s, quota %d", sale["id"], sku, quota)


def _wait_open(host: str, sale_id: str, timeout: float = 30.0) -> None:
    """A sale opens once the inventory holds its units: start the spike only then."""
    url = f"{host}/api/flash-sales/{sale_id}"
    for _ in range(int(timeout / 0.1)):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if json.loads(response.read()).get("status") == "open":
                    return
        except (urllib.error.URLError, OSError) as error:
            raise RuntimeError(f"could not GET {url}: {error}") from None
        gevent.sleep(0.1)
    raise RuntimeError(f"the sale {sale_id} did not open in {timeout:.0f} s: is the inventory up?")


def _admin_post(host: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        host + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"POST {host}{path} answered {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(f"could not POST {host}{path}: {error}") from None


class Customer(FastHttpUser):
    """One distinct customer: buys once, follows the ticket, then idles."""

    wait_time = constant(1)

    def on_start(self) -> None:
        number = next(_numbers)
        self.customer = {"name": f"Spike customer {number}", "phone": f"+48{_run:04d}{number:08d}"}
        self.done = False

    @task
    def buy_once(self) -> None:
        if self.done or not sale["id"]:
            return
        self.done = True
        status, answer, retry_after = self._purchase("purchase")
        if status == 429:
            gevent.sleep(retry_after)
            status, answer, _ = self._purchase("purchase (after 429)")
        if status == 202 and answer:
            self._follow(answer["status_url"])

    def _purchase(self, name: str) -> tuple[int, dict | None, float]:
        with self.client.post(
            f"/api/flash-sales/{sale['id']}/purchases",
            json={"customer": self.customer},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code in EXPECTED:
                response.success()
            else:
                response.failure(f"unexpected {response.status_code}")
            retry_after = _seconds(response.headers.get("Retry-After"))
            body = None
            if response.status_code == 202:
                try:
                    body = response.json()
                except ValueError:
                    response.failure("202 without a JSON body")
            return response.status_code, body, retry_after

    def _follow(self, status_url: str) -> None:
        for poll in range(1, MAX_POLLS + 1):
            gevent.sleep(POLL_WAIT)
            with self.client.get(status_url, name="ticket", catch_response=True) as response:
                status = _field(response, "status") if response.status_code == 200 else None
                if status in ("WON", "LOST"):
                    response.success()
                    return
                if response.status_code != 200:
                    response.failure(f"unexpected {response.status_code}")
                    return
                if poll == MAX_POLLS:
                    response.failure(f"still {status} after {MAX_POLLS} polls")


def _field(response, name: str) -> object:  # type: ignore[no-untyped-def]
    try:
        return response.json().get(name)
    except (ValueError, AttributeError):
        return None


def _seconds(raw: str | None) -> float:
    try:
        return min(max(float(raw or 1), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        return 1.0


class SpikeShape(LoadTestShape):
    """Every user arrives within RAMP_SECONDS, they stay until --run-time, then it stops."""

    use_common_options = True  # reads --users and --run-time

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        users = (options.num_users if options else None) or 100
        hold = (options.run_time if options else None) or DEFAULT_HOLD_SECONDS
        if self.get_run_time() >= hold:
            return None
        return users, users / RAMP_SECONDS
