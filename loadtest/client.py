"""One HTTP/1.1 connection to the shop, kept alive between requests (stdlib http.client).

`Http(base_url).request(method, path, body)` sends JSON and returns an `Answer`: status,
headers, the body parsed as JSON (None when it is not JSON) and the seconds from sending to
the last byte read. A keep-alive connection the server closed while it was idle is retried
once on a new connection; any other failure raises one of HTTP_ERRORS. An Http is not
thread-safe: the load generator (loadtest/crowd.py) gives each of its threads its own.

http.client rather than requests: `shop loadtest` is part of the product, which does not
depend on requests, and a load generator should spend as little CPU per request as it can.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 10.0
HTTP_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, garbled


class NotAnHttpUrl(ValueError):
    """The base URL is not http(s)://HOST[:PORT][/prefix]."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


class Http:
    """One keep-alive connection to the shop (not thread-safe: one per thread)."""

    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotAnHttpUrl(f"--url must look like http://HOST:PORT, got {base_url!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._used = False

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            secure = self.scheme == "https"
            kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
            self._connection = kind(self.host, self.port, timeout=self.timeout)
            self._used = False
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            sent_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = self._connect()
            reused = self._used
            started = time.perf_counter()
            try:
                connection.request(method, self.prefix + path, body=data, headers=sent_headers)
                response = connection.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: once more
                raise
            except HTTP_ERRORS:
                self.close()
                raise
            seconds = time.perf_counter() - started
            self._used = True
            if response.will_close:
                self.close()
            return Answer(response.status, dict(response.getheaders()), _json(raw), seconds)
        raise AssertionError("unreachable")  # pragma: no cover


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
