"""The one load generator: a crowd of HTTP clients, each a thread with its own connection.

`Crowd(base_url, size)` is a concurrent.futures.ThreadPoolExecutor of `size` threads; the
first time a thread works it makes its own keep-alive `Http` (loadtest/client.py) and keeps
it for the crowd's life. `work` is a function of that client (and an item, or a number);
what it returns comes back to the caller. Three ways to load a server:

  each(work, items, deadline)     work(client, item) once per item, `size` at a time: closed
                                  loop (a thread takes the next item once its answer is in).
                                  `shop loadtest flash-sale`: the burst, the polls.
  keep_going(work, until, pause)  one thread calls work(client) again and again until the
                                  deadline, at most once per `pause` seconds. Once per thread:
                                  a closed loop of `size` connections (bench.flash_sale);
                                  once per kind of request, each at its pace (shop chaos).
  at_rate(work, rate, seconds)    open loop: request i is due i / rate seconds after the start
                                  whether or not the server keeps up; when every thread is
                                  busy it waits for one, and its latency counts from when it
                                  was due (bench.pipeline's fixed-rate trials).

`cpu_seconds` adds up the CPU time (time.thread_time) the crowd's threads spent on the work,
so a bench can say what the generator itself costs per request. One Python process, so one
GIL: the generator's ceiling is what one core can do, and the benches print it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Generic, TypeVar

from loadtest.client import REQUEST_TIMEOUT, Http

T = TypeVar("T")
R = TypeVar("R")

_SKIPPED = object()  # an item of each() that was not started before the deadline


@dataclass(frozen=True)
class Timed(Generic[R]):
    """One request of an open loop."""

    due: float  # seconds after the run's start when it was due
    sent_at: float  # wall clock (time.time()) when a thread took it up
    latency: float  # seconds from when it was due until `work` returned
    result: R


class Crowd:
    """`size` threads, each with its own keep-alive connection to `base_url`."""

    def __init__(self, base_url: str, size: int) -> None:
        Http(base_url)  # a URL that is not http(s)://HOST... fails here, not in a thread
        self.base_url, self.size = base_url, size
        self.cpu_seconds = 0.0
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="loadtest")
        self._local = threading.local()
        self._clients: list[Http] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        for client in self._clients:
            client.close()

    def each(
        self,
        work: Callable[[Http, T], R],
        items: Iterable[T],
        deadline: float,
        on_done: Callable[[], None] = lambda: None,
    ) -> list[R]:
        """`work(client, item)` for every item, started in order; an item not started by
        `deadline` (time.monotonic) is skipped. Results in order of finishing, `on_done()`
        after each; an exception in `work` (a bug: HTTP errors are work's to handle) is
        raised here."""

        def one(item: T) -> R | object:
            if time.monotonic() >= deadline:
                return _SKIPPED
            return self._timed(work, item)

        futures = [self._executor.submit(one, item) for item in items]
        results: list[R] = []
        # Each request has its own timeout, so the work ends soon after the deadline.
        patience = max(0.0, deadline - time.monotonic()) + 2 * REQUEST_TIMEOUT + 5
        try:
            for future in as_completed(futures, timeout=patience):
                result = future.result()
                if result is not _SKIPPED:
                    results.append(result)  # type: ignore[arg-type]
                    on_done()
        except TimeoutError:
            pass  # what is still running is left out
        finally:
            for future in futures:
                future.cancel()
        return results

    def keep_going(
        self,
        work: Callable[[Http], R],
        until: float,
        pause: float = 0.0,
        stop: threading.Event | None = None,
    ) -> Future[list[R]]:
        """One thread calls `work(client)` until `until` (time.monotonic) or `stop`, starting
        a call at most every `pause` seconds; the future holds the calls' results. Submit at
        most `size` of these at a time: each keeps a thread for itself."""
        stop = stop or threading.Event()

        def loop() -> list[R]:
            results = []
            while not stop.is_set() and time.monotonic() < until:
                started = time.monotonic()
                results.append(self._timed(work))
                if pause > 0:
                    stop.wait(max(0.0, pause - (time.monotonic() - started)))
            return results

        return self._executor.submit(loop)

    def at_rate(
        self, work: Callable[[Http, int], R], rate: float, seconds: float
    ) -> tuple[list[Timed[R]], list[float]]:
        """Open loop: `work(client, i)` for i in range(round(rate * seconds)), due at i / rate
        seconds after the start. Returns every request's Timed, in order, and how late this
        thread handed each one to the crowd (the generator's own lag)."""
        cpu_before = time.thread_time()
        start = time.monotonic() + 0.05

        def one(number: int, due: float) -> Timed[R]:
            sent_at = time.time()
            result = self._timed(work, number)
            return Timed(due - start, sent_at, time.monotonic() - due, result)

        futures, lags = [], []
        for number in range(round(rate * seconds)):
            due = start + number / rate
            if (ahead := due - time.monotonic()) > 0:
                time.sleep(ahead)
            lags.append(time.monotonic() - due)
            futures.append(self._executor.submit(one, number, due))
        timed = [future.result() for future in futures]
        with self._lock:
            self.cpu_seconds += time.thread_time() - cpu_before
        return timed, lags

    def _timed(self, work: Callable[..., R], *args: object) -> R:
        """Run `work` with this thread's client, adding its CPU time to cpu_seconds."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = Http(self.base_url)
            with self._lock:
                self._clients.append(client)
        started = time.thread_time()
        try:
            return work(client, *args)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.cpu_seconds += spent
