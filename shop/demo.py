"""The demo catalog `shop up` loads into an empty shop, so that a first look finds something
to order: four products, the coupon WELCOME and a flash sale that opens a minute later.

It goes through the shop's public paths, as an admin with curl would: the JSON API with
the admin token, once the web app answers. So every service hears of it the way it hears
of a user's request (the inventory from `product.created`, the coupon service over RPC,
the flash sale's units set aside through `flash_sale.created`), and nothing here knows a
table. "Empty" means GET /api/products lists nothing; a shop with products is left alone.
Its skus are not the README's and docs/labs.md's (TEA-1, ...), so their curl examples work
on a demo shop too.

SHOP_DEMO_DATA=0 (or false, no, off) turns it off; it is the shop's setting, not a
service's. It runs beside the supervisor in a thread and never stops `shop up`: what it
could not load it says in its one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import requests

from messaging.settings import SettingsError
from shop.local_servers import wait_until
from shop.running_shop import answers

VARIABLE = "SHOP_DEMO_DATA"
OFF, ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")

PRODUCTS = (
    {"sku": "SENCHA-1", "name": "Sencha green tea", "price_cents": 450, "stock": 40},
    {"sku": "MUG-1", "name": "Stoneware mug", "price_cents": 1290, "stock": 12},
    {"sku": "BEANS-1", "name": "Coffee beans, 250 g", "price_cents": 890, "stock": 30},
    {"sku": "KETTLE-1", "name": "Gooseneck kettle", "price_cents": 3490, "stock": 8},
)
COUPON = {"code": "WELCOME", "amount_off_cents": 200, "min_subtotal_cents": 1000}
SALE = {"sku": "MUG-1", "price_cents": 390, "quota": 5}
SALE_OPENS_AFTER = timedelta(minutes=1)
SALE_LASTS = timedelta(hours=1)
WAIT_SECONDS = 60.0  # for the web app to answer, and again for the coupon service


def wanted(environ: Mapping[str, str]) -> bool:
    """SHOP_DEMO_DATA, on unless it says otherwise; SettingsError for a value it is not."""
    raw = environ.get(VARIABLE, "").strip().lower()
    if raw in OFF or raw in ON:
        return raw not in OFF
    raise SettingsError(f"{VARIABLE} must be 1 or 0 (or true/false, yes/no, on/off), got {raw!r}")


class Unloadable(Exception):
    """The demo catalog could not be loaded; the message says why, for the one line."""


class AdminClient:
    """The JSON API as an admin calls it: `Authorization: Bearer <token>`."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: object | None = None) -> requests.Response:
        try:
            return self.session.request(method, self.base + path, json=body, timeout=10)
        except requests.RequestException as error:
            raise Unloadable(f"{method} {path} got no answer ({type(error).__name__})") from error

    def create(self, path: str, body: dict, *, until: float = 0.0) -> dict:
        """POST `body`; a 409 (made already) is fine. A 503 (a service that is still
        starting) is tried again until the monotonic deadline `until`."""
        while True:
            answer = self.call("POST", path, body)
            if answer.status_code in (201, 409):
                return answer.json()
            if answer.status_code != 503 or time.monotonic() >= until:
                detail = _detail(answer)
                raise Unloadable(f"POST {path} answered {answer.status_code}: {detail}")
            time.sleep(1)


def load(base_url: str, token: str, now: datetime | None = None) -> str | None:
    """Load the demo catalog into an empty shop: the line that says what was loaded, or
    None when the shop has products already. Unloadable when the web app never answers
    or refuses something (then nothing after that was loaded)."""
    client = AdminClient(base_url, token)
    wait_for_the_web_app(client)
    listed = client.call("GET", "/api/products")
    if listed.status_code != 200:
        raise Unloadable(f"GET /api/products answered {listed.status_code}")
    if listed.json():
        return None
    for product in PRODUCTS:
        client.create("/api/products", product)
    opens = (now or datetime.now(UTC)) + SALE_OPENS_AFTER
    client.create(
        "/api/flash-sales",
        {**SALE, "starts_at": opens.isoformat(), "ends_at": (opens + SALE_LASTS).isoformat()},
    )
    products = f"{len(PRODUCTS)} products"
    sale = f"a flash sale opening at {opens.astimezone().strftime('%H:%M')}"  # local time
    try:  # over RPC: the coupon service may still be starting
        client.create("/api/coupons", COUPON, until=time.monotonic() + WAIT_SECONDS)
    except Unloadable as error:
        coupon = f"but not the coupon {COUPON['code']} ({error})"
        return f"loaded the demo catalog: {products}, {sale}; {coupon}"
    return f"loaded the demo catalog: {products}, coupon {COUPON['code']}, {sale}"


def wait_for_the_web_app(client: AdminClient) -> None:
    try:
        wait_until(lambda: answers(client.base + "/healthz"), WAIT_SECONDS, "the web app", 0.2)
    except TimeoutError:
        raise Unloadable(f"the web app did not answer within {WAIT_SECONDS:.0f} s") from None


def web_app_url(host: str, port: int) -> str:
    """Where this machine reaches the web app (a wildcard address is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def load_in_background(base_url: str, token: str, say: Callable[[str], None]) -> threading.Thread:
    """`load` in a daemon thread, saying its outcome in one line (`say` prints it)."""

    def run() -> None:
        try:
            line = load(base_url, token)
        except Unloadable as error:
            say(f"shop: could not load the demo catalog: {error} ({VARIABLE}=0 to start empty)")
            return
        if line is None:
            say("shop: the catalog has products already, so no demo catalog was loaded")
        else:
            say(f"shop: {line} ({VARIABLE}=0 to start empty)")

    thread = threading.Thread(target=run, name="demo catalog", daemon=True)
    thread.start()
    return thread


def _detail(answer: requests.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.reason))
    except ValueError:
        return answer.reason or "no detail"
