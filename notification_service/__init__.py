"""The notification service: one SMS per order outcome and per reward coupon.

models (tables), templates (the texts), gateway (where SMS go: stored and logged, or an
HTTP endpoint), handlers (the `notifications.sms` events: store the SMS), sender (deliver
the stored SMS, outside any transaction) and main (the process).
"""
