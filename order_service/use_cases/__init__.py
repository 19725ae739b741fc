"""What the shop's users ask of the order service, as functions that take a session (or a
session factory) and a command, and know nothing of Flask or pika: the catalog
(products.py), orders (orders.py) and flash sales (flash_sales.py). The web layer calls
them; each writes its change and its event (through the outbox) in one transaction."""
