"""Where SMS go. `StoringGateway` (the default) only logs them: the database row is the
SMS. `HttpGateway` posts them to SMS_GATEWAY_URL, one attempt per call with a timeout,
and sends the SMS's key (the message id of the event it answers) as `Idempotency-Key`,
so a gateway that honours it never delivers one SMS twice, however often it is re-sent.

Retries are not the gateway's business: the sender (sender.py) schedules them, outside
any transaction. A failure says whether trying again can help (`SmsGatewayError`) or not
(`SmsRefused`: a 4xx other than 408 and 429).
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Protocol

log = logging.getLogger(__name__)

RETRYABLE_CLIENT_ERRORS = (408, 429)  # request timeout, too many requests


class SmsGatewayError(RuntimeError):
    """The gateway did not take the SMS this time; the sender tries again later."""


class SmsRefused(SmsGatewayError):
    """The gateway refused the SMS for good (a 4xx other than 408/429): never retried."""


class SmsGateway(Protocol):
    def send(self, key: str, phone: str, text: str) -> None: ...


class StoringGateway:
    def send(self, key: str, phone: str, text: str) -> None:
        log.info("SMS to %s: %s", phone, text, extra={"message_id": key})


class HttpGateway:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, key: str, phone: str, text: str) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"id": key, "to": phone, "text": text}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout):
                return
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in RETRYABLE_CLIENT_ERRORS:
                raise SmsRefused(f"the gateway refused the SMS: HTTP {error.code}") from error
            raise SmsGatewayError(f"the gateway answered HTTP {error.code}") from error
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise SmsGatewayError(f"the gateway did not answer: {error}") from error


def gateway_for(url: str | None) -> SmsGateway:
    return HttpGateway(url) if url else StoringGateway()
