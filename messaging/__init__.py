"""Reliable messaging for every service, with no business rules in it.

settings (the environment), database (engines and sessions), connection (pika with
heartbeats and reconnects), topology (the exchanges and queues of CONTRACT.md),
envelope (message properties), publisher (publisher confirms), outbox and relay,
inbox, consumer (the runner that acks after commit) and dead_letters (list, replay).
"""
