"""The coupon service: coupons, the RPC server that quotes and reserves them, and rewards.

models (tables), rules (what makes a coupon valid and what it takes off), rpc (the
`coupons.rpc` request handlers), handlers (the `coupons.orders` events: redeem, release,
reward) and main (the process: RPC server, consumer and outbox relay, as threads).
"""
