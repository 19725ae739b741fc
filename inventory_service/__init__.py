"""The inventory service: stock per sku, and the all-or-nothing reservation of an order.

models (tables), handlers (the rules, one function per event type) and main (the
process: a consumer on `inventory.orders` and the outbox relay, as threads).
"""
