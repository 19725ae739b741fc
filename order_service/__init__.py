"""The order service: the web app and API, order rules, and (later) the saga and flash sale.

models (tables), schemas (request validation), handlers (business rules, no Flask or
pika), api (JSON routes), problems (RFC 9457 errors), app (the Flask factory) and main
(the processes: web, outbox relay).
"""
