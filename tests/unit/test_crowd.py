"""The one load generator (loadtest/crowd.py) against a tiny local HTTP server: each item is
sent once, never more than `size` at a time, and not at all after the deadline; the open
loop sends every request it was asked for, each with its due moment; a loop stops when told."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.client import Http
from loadtest.crowd import Crowd


class Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the shop's gunicorn
    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
            cls.paths.append(self.path)
        time.sleep(0.005)  # long enough for requests to overlap
        with cls.lock:
            cls.in_flight -= 1
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server():
    Counting.in_flight = Counting.most_in_flight = 0
    Counting.paths = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def get(client: Http, item: int) -> int:
    return client.request("GET", f"/item/{item}").status


def test_each_item_is_sent_once_and_never_more_than_size_at_a_time(server):
    with Crowd(server, size=4) as crowd:
        statuses = crowd.each(get, range(40), deadline=time.monotonic() + 60)
    assert statuses == [200] * 40
    assert sorted(Counting.paths) == sorted(f"/item/{n}" for n in range(40))
    assert 1 <= Counting.most_in_flight <= 4
    assert crowd.cpu_seconds > 0


def test_items_not_started_by_the_deadline_are_skipped(server):
    with Crowd(server, size=2) as crowd:
        assert crowd.each(get, range(10), deadline=time.monotonic() - 1) == []
    assert Counting.paths == []


def test_the_open_loop_sends_every_request_due_at_its_moment(server):
    with Crowd(server, size=8) as crowd:
        timed, lags = crowd.at_rate(lambda client, n: get(client, n), rate=400, seconds=0.05)
    assert [request.result for request in timed] == [200] * 20
    assert [request.due for request in timed] == pytest.approx([n / 400 for n in range(20)])
    assert len(lags) == 20 and all(request.latency > 0 for request in timed)


def test_a_loop_goes_on_until_it_is_stopped(server):
    stop = threading.Event()
    calls = []

    def work(client: Http) -> int:
        calls.append(get(client, len(calls)))
        if len(calls) == 3:
            stop.set()
        return calls[-1]

    with Crowd(server, size=1) as crowd:
        results = crowd.keep_going(work, until=time.monotonic() + 60, stop=stop).result()
    assert results == [200, 200, 200]


def test_a_url_that_is_not_http_is_refused_at_once():
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        Crowd("localhost:8000", size=1)
