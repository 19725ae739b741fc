"""Flash-sale ticket ids that prove themselves: no database row until a ticket is decided.

A ticket id carries an HMAC of its sale, so an undecided ticket needs no row (the API
answers QUEUED for it), and an id that was never issued is told apart (404) without one
either. Every web process must share the secret: the admin token, else the order
database URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


class TicketSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(f"flash-sale-tickets:{secret}".encode()).digest()

    def issue(self, sale_id: str) -> str:
        nonce = secrets.token_hex(12)
        return nonce + self._signature(sale_id, nonce)

    def issued(self, sale_id: str, ticket_id: str) -> bool:
        nonce, signature = ticket_id[:24], ticket_id[24:]
        return len(ticket_id) == 40 and hmac.compare_digest(
            signature, self._signature(sale_id, nonce)
        )

    def _signature(self, sale_id: str, nonce: str) -> str:
        return hmac.new(self._key, f"{sale_id}:{nonce}".encode(), "sha256").hexdigest()[:16]
