"""The order service: the catalog, orders and their saga, and the flash sale.

service.py      its line of the shop's catalog: queues, workers, what it reads and announces
settings.py     what it is configured with
models.py       its tables; commands.py the commands it takes (the API's request bodies)
events.py       the events it announces, typed, and their builders; errors.py its refusals
use_cases/      products, orders, flash sales: what its users ask of it
consumers/      saga (orders.inventory), read_model (orders.read-model),
                flash_worker (flash-sale.requests)
sale_lifecycle.py  a flash sale's units, held by the inventory from creation to end
coupon_client.py   RPC to the coupon service; tickets.py  self-proving ticket ids
web/            the Flask app: JSON API, flash-sale API and admission gate, HTML pages,
                problem+json, serializers, the OpenAPI document
migrations/     its Alembic environment
"""
