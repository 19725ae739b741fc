"""The notification service: one SMS per order outcome and per reward coupon.

models (tables), templates (the texts), gateway (where SMS go: stored and logged, or an
HTTP endpoint), handlers (the `notifications.sms` events) and main (the process).
"""
