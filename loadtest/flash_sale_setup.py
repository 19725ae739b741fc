"""What `shop loadtest flash-sale` does before and beside its burst, through the shop's HTTP
API: check something answers, make a product and a sale with the admin token and wait until
the sale opens (`setup`), and sample the product's stock all along (`StockSampler`).
Anything that stops the set-up raises SetupFailed with one line for the user (exit 2)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from loadtest.client import HTTP_ERRORS, REQUEST_TIMEOUT, Answer, Http, NotAnHttpUrl
from loadtest.sampler import Sampler


class SetupFailed(Exception):
    """The shop is not reachable, refuses the token, or refuses the sale: exit 2, one line."""


@dataclass
class Sale:
    id: str
    sku: str
    quota: int


def setup(url: str, admin_token: str, quota: int) -> Sale:
    """A new product with `stock = quota` and an open sale of it, at the shop at `url`."""
    try:
        client = Http(url)
    except NotAnHttpUrl as error:
        raise SetupFailed(str(error)) from None
    try:
        try:
            health = client.request("GET", "/healthz")
        except HTTP_ERRORS as error:
            raise SetupFailed(
                f"nothing answers at {url} ({_reason(error)}); start the shop with "
                "`shop up`, or pass --url"
            ) from None
        if health.status != 200:
            raise SetupFailed(f"{url} answered GET /healthz with {health.status}: is it the shop?")
        admin = {"Authorization": f"Bearer {admin_token}"}
        sku = f"LOAD-{secrets.token_hex(4).upper()}"
        product = {"sku": sku, "name": "Flash-sale load test", "price_cents": 19900, "stock": quota}
        created = _admin_call(client, "POST", "/api/products", product, admin, url)
        if created.status != 201:
            raise SetupFailed(f"could not create product {sku}: {_problem(created)}")
        body = {"sku": sku, "price_cents": 100, "quota": quota}
        sale = _admin_call(client, "POST", "/api/flash-sales", body, admin, url)
        if sale.status != 201 or not isinstance(sale.body, dict):
            raise SetupFailed(f"could not create the flash sale: {_problem(sale)}")
        _wait_open(client, sale.body["id"], url)
        return Sale(sale.body["id"], sku, quota)
    finally:
        client.close()


def sale_view(url: str, sale: Sale) -> dict[str, Any] | None:
    """GET /api/flash-sales/{id}, or None when it does not answer 200."""
    client = Http(url)
    try:
        answer = client.request("GET", f"/api/flash-sales/{sale.id}")
    except HTTP_ERRORS:
        return None
    finally:
        client.close()
    return answer.body if answer.status == 200 and isinstance(answer.body, dict) else None


def _wait_open(client: Http, sale_id: str, url: str, timeout: float = 30.0) -> None:
    """A sale opens once the inventory has set its units aside (a moment, normally)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _admin_call(client, "GET", f"/api/flash-sales/{sale_id}", None, {}, url)
        status = answer.body.get("status") if isinstance(answer.body, dict) else None
        if status == "open":
            return
        if time.monotonic() >= deadline:
            raise SetupFailed(
                f"the flash sale {sale_id} did not open within {timeout:.0f} s (status "
                f"{status}): is the inventory service running?"
            )
        time.sleep(0.1)


def _admin_call(
    client: Http, method: str, path: str, body: object, headers: dict[str, str], url: str
) -> Answer:
    try:
        answer = client.request(method, path, body, headers)
    except HTTP_ERRORS as error:
        raise SetupFailed(f"{method} {url}{path} failed: {_reason(error)}") from None
    if answer.status in (401, 403):
        raise SetupFailed(
            f"the shop at {url} refused the admin token ({answer.status}): set "
            "SHOP_ADMIN_TOKEN to the token `shop up` printed, or run where its var/admin-token is"
        )
    return answer


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _problem(answer: Answer) -> str:
    if isinstance(answer.body, dict):
        return f"{answer.status} {answer.body.get('detail') or answer.body.get('title') or ''}"
    return str(answer.status)


class StockSampler(Sampler):
    """GET /api/products/{sku} every 0.2 s, keeping the lowest `available`, and once more
    after the block (everything has settled by then)."""

    interval = 0.2
    name = "stock sampler"

    def __init__(self, base_url: str, sku: str) -> None:
        super().__init__()
        self.base_url, self.sku = base_url, sku
        self.lowest: int | None = None
        self.last: int | None = None
        self.samples = 0
        self._client: Http | None = None

    def setup(self) -> None:
        self._client = Http(self.base_url)

    def sample(self) -> None:
        assert self._client is not None
        self._look(self._client)

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        client = Http(self.base_url, timeout=REQUEST_TIMEOUT)
        self._look(client)  # one last look, after everything settled
        client.close()

    def _look(self, client: Http) -> None:
        try:
            answer = client.request("GET", f"/api/products/{self.sku}")
        except HTTP_ERRORS:
            return
        available = answer.body.get("available") if isinstance(answer.body, dict) else None
        if answer.status == 200 and isinstance(available, int):
            self.samples += 1
            self.last = available
            self.lowest = available if self.lowest is None else min(self.lowest, available)
