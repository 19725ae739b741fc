"""The inventory service: stock and reservations (built in the next issue)."""
