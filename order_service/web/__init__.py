"""The order service's web app (Flask, under gunicorn): parse, call a use case, answer.

app.py          create_app(): the wiring, and /openapi.json and /api/docs
api.py          health, products, orders, coupons (JSON)
flash_api.py    flash sales, purchases and tickets (JSON)
admission.py    the flash-sale gate: verdicts from memory, or from the broker
pages.py        the HTML pages (catalog and order form, an order, a sale)
problems.py     problem+json, and which status each refusal of the rules gets
serializers.py  the answers' shapes, as pydantic models
openapi.py      the OpenAPI 3.1 document, built from the routes and their models
auth.py, inputs.py, context.py   the admin guard, reading a request, the app's wiring
"""
