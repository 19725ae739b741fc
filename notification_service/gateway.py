"""Where SMS go. `StoringGateway` (the default) only logs them: the database row is the
SMS. `HttpGateway` posts them to SMS_GATEWAY_URL with a timeout and retries, and sends the
SMS id as `Idempotency-Key`, so a gateway that honours it never delivers one twice."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Protocol

log = logging.getLogger(__name__)


class SmsGatewayError(RuntimeError):
    """The gateway did not take the SMS; the message is retried (requeued)."""


class SmsGateway(Protocol):
    def send(self, sms_id: str, phone: str, text: str) -> None: ...


class StoringGateway:
    def send(self, sms_id: str, phone: str, text: str) -> None:
        log.info("SMS to %s: %s", phone, text, extra={"message_id": sms_id})


class HttpGateway:
    def __init__(self, url: str, timeout: float = 5.0, attempts: int = 3) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = attempts

    def send(self, sms_id: str, phone: str, text: str) -> None:
        body = json.dumps({"id": sms_id, "to": phone, "text": text}).encode()
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Idempotency-Key": sms_id},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return
            except urllib.error.HTTPError as error:
                if 400 <= error.code < 500 and error.code != 429:
                    raise SmsGatewayError(f"the gateway refused the SMS: {error.code}") from error
                problem = f"HTTP {error.code}"
            except OSError as error:
                problem = str(error)
            log.warning("SMS gateway attempt %d/%d failed: %s", attempt, self.attempts, problem)
            time.sleep(0.2 * 2**attempt)
        raise SmsGatewayError(f"the gateway did not answer after {self.attempts} attempts")


def gateway_for(url: str | None) -> SmsGateway:
    return HttpGateway(url) if url else StoringGateway()
