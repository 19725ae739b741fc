"""A real SMS gateway for the tests: a local HTTP server in a thread that behaves as the
test scripts it, and that dedupes by Idempotency-Key as a real gateway would (a repeat of
a key it delivered is answered 200 and not delivered again).

    with SmsGatewayServer() as gateway:
        gateway.fail(key, 503)      # answer 503 to that key until told otherwise
        gateway.refuse(key, 400)    # answer 400 to that key, always
        gateway.refuse_all(400)     # answer 400 to every key
        gateway.hold()              # every request waits until gateway.release()
        gateway.url, gateway.requests, gateway.delivered
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class GatewayRequest:
    key: str | None  # the Idempotency-Key header
    body: dict


@dataclass
class SmsGatewayServer:
    requests: list[GatewayRequest] = field(default_factory=list)
    delivered: set[str] = field(default_factory=set)  # the keys it delivered, once each
    holding: threading.Event = field(default_factory=threading.Event)  # a request waits
    _released: threading.Event = field(default_factory=threading.Event)
    _answers: dict[str, int] = field(default_factory=dict)  # key -> status to answer
    _usual_answer: int = 200  # to every other key
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._released.set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/sms"

    def __enter__(self) -> SmsGatewayServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def fail(self, key: str, status: int = 503) -> None:
        self._answers[key] = status

    refuse = fail  # a 4xx answer is a refusal; the name says what the test means

    def refuse_all(self, status: int = 400) -> None:
        self._usual_answer = status

    def recover(self, key: str) -> None:
        self._answers.pop(key, None)

    def requests_for(self, key: str) -> list[GatewayRequest]:
        with self._lock:
            return [request for request in self.requests if request.key == key]

    def answer(self, request: GatewayRequest) -> int:
        with self._lock:
            self.requests.append(request)
        if not self._released.is_set():
            self.holding.set()
            self._released.wait()
        status = self._answers.get(request.key or "", self._usual_answer)
        if status == 200 and request.key is not None:
            with self._lock:
                self.delivered.add(request.key)
        return status


def _handler_for(gateway: SmsGatewayServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            status = gateway.answer(GatewayRequest(self.headers.get("Idempotency-Key"), body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:  # keep the test output quiet
            pass

    return Handler
