"""Flash-sale tests' helpers: web apps standing for web processes, the workers that set a
sale's units aside or decide its tickets, and customers buying in bursts."""

from concurrent.futures import ThreadPoolExecutor

from messaging.database import make_engine
from messaging.service import ServiceContext
from order_service.service import FLASH_SALE_WORKER
from order_service.service import SERVICE as ORDER
from shop.catalog import CATALOG
from tests.support.amqp import declare, wait_until
from tests.support.orders import ADMIN, a_product
from tests.support.pipeline import ServiceThread, pipeline_settings


def settings_for(tmp_path, database_url, amqp_url, queue_limit=1000):
    declare(amqp_url, queue_limit)
    settings = pipeline_settings(tmp_path, database_url, amqp_url)
    return settings.with_changes(flash_sale_queue_limit=queue_limit)


def start_services(start_in_thread, settings, *names):
    for name in names or CATALOG.names:
        start_in_thread(ServiceThread(name, settings))


def order_workers(settings):
    """The order process's workers (as `shop run order` makes them), to start some alone."""
    engine = make_engine(settings.of("order").database_url)
    context = ServiceContext(ORDER, settings.of("order"), engine, CATALOG.topology(settings))
    return ORDER.workers(context)


def start_allocation(start_in_thread, settings):
    """What sets a sale's units aside (the inventory, the order relay and saga), but no
    ticket worker: admitted requests stay in the queue until `start_flash_workers`."""
    start_services(start_in_thread, settings, "inventory")
    for worker in order_workers(settings):
        if worker.name != FLASH_SALE_WORKER:
            start_in_thread(worker)


def start_flash_workers(start_in_thread, settings, how_many=1):
    for _ in range(how_many):
        (worker,) = [w for w in order_workers(settings) if w.name == FLASH_SALE_WORKER]
        start_in_thread(worker)


def wait_open(client, sale_id: str) -> dict:
    """A sale opens once the inventory holds its units."""

    def opened():
        sale = client.get(f"/api/flash-sales/{sale_id}").get_json()
        return sale if sale["status"] == "open" else None

    return wait_until(opened, 30, f"flash sale {sale_id} to open")


def open_sale(client, quota, stock=1000):
    return wait_open(client, new_sale(client, quota, stock)["id"])


def new_sale(client, quota, stock=1000, **timing):
    response = client.post(
        "/api/products", json=a_product("PHONE", stock=stock, price_cents=90000), headers=ADMIN
    )
    assert response.status_code == 201, response.get_json()
    return create_sale(client, "PHONE", quota, **timing)


def create_sale(client, sku, quota, **timing):
    sale = client.post(
        "/api/flash-sales",
        json={"sku": sku, "price_cents": 100, "quota": quota, **timing},
        headers=ADMIN,
    )
    assert sale.status_code == 201, sale.get_json()
    return sale.get_json()


def customer(number: int) -> dict:
    return {"customer": {"name": f"Buyer {number}", "phone": f"+4915{number:08d}"}}


def buy(client, sale_id: str, number: int):
    return client.post(f"/api/flash-sales/{sale_id}/purchases", json=customer(number))


def burst(client, sale_id, numbers, workers=32):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda n: buy(client, sale_id, n), numbers))


def ticket(client, sale_id, ticket_id):
    return client.get(f"/api/flash-sales/{sale_id}/tickets/{ticket_id}").get_json()


def wait_decided(client, sale_id, ticket_ids, timeout=60.0) -> list[dict]:
    def all_decided():
        found = [ticket(client, sale_id, t) for t in ticket_ids]
        return found if all(t["status"] != "QUEUED" for t in found) else None

    return wait_until(all_decided, timeout, f"{len(ticket_ids)} tickets to be decided")
