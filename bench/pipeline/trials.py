"""One fixed-rate trial and its verdict, and the search for the highest rate that passes.

A trial offers POST /api/orders at a fixed rate R for a while with the load generator's
open loop (loadtest/crowd.py: request i due at i / R s, a new connection each) and keeps
every reply: when it was due, when it went out, its latency from when it was due, its
status. `http_problems` says why the web server did not keep up, if it did not: errors,
answers coming in below 95 % of R, HTTP p99 (nearest rank) over the bound. `find_max_rate`
doubles R from a start while trials pass, then bisects between the highest pass and the
lowest failure. A Trial's `line()` is the line each trial prints as it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.cpu import OTHERS
from bench.pipeline.events import ORDER
from bench.support import HOST
from loadtest.client import HTTP_ERRORS, Answer, Http
from loadtest.crowd import Crowd
from loadtest.stats import percentile

ACHIEVED_FRACTION = 0.95  # the answers must come in at this fraction of the offered rate
MAX_IN_FLIGHT = 256  # the generator's threads, so open connections; beyond, requests wait
CLOSE = {"Connection": "close"}  # a new connection per request, as a crowd of browsers


@dataclass
class Reply:
    due: float  # seconds after the run's start when the request was due
    sent_at: float  # wall clock (time.time()) when the request went out
    latency: float  # seconds from when the request was due until its answer was read
    status: int  # the HTTP status; 0 for a connection error or a timeout
    order_id: str | None = None


@dataclass
class LoadRun:
    rate: float
    duration: float
    replies: list[Reply]
    lag_p99: float  # how late the generator itself started requests
    cpu_seconds: float  # CPU time the generator's threads spent

    @property
    def ok(self) -> int:
        return sum(1 for reply in self.replies if reply.status == 201)

    @property
    def errors(self) -> int:
        return len(self.replies) - self.ok

    @property
    def achieved(self) -> float:
        """201 answers per second during the run: the offered rate if the server keeps up."""
        answered = [reply.due + reply.latency for reply in self.replies if reply.status == 201]
        return sum(1 for moment in answered if moment <= self.duration) / self.duration

    def latency(self, fraction: float) -> float:
        return percentile([reply.latency for reply in self.replies], fraction)


def offer_orders(port: int, rate: float, duration: float, want_ids: bool = False) -> LoadRun:
    """POST a valid order to /api/orders at `rate` for `duration` seconds (open loop)."""

    def post(client: Http, _number: int) -> Answer | None:
        try:
            return client.request("POST", "/api/orders", ORDER, CLOSE)
        except HTTP_ERRORS:
            return None

    with Crowd(f"http://{HOST}:{port}", MAX_IN_FLIGHT) as crowd:
        timed, lags = crowd.at_rate(post, rate, duration)
    replies = []
    for request in timed:
        answer = request.result
        status = answer.status if answer is not None else 0
        body = answer.body if answer is not None and isinstance(answer.body, dict) else {}
        order_id = body.get("id") if want_ids and status == 201 else None
        replies.append(Reply(request.due, request.sent_at, request.latency, status, order_id))
    return LoadRun(rate, duration, replies, percentile(lags, 0.99), crowd.cpu_seconds)


@dataclass
class Trial:
    rate: float
    load: LoadRun
    cpu: dict[str, float]  # % of one core per process
    waits: dict[str, dict[str, float]]  # per process, % of a thread's time per WAIT_KINDS
    max_queued: int | None = None  # ready messages over all work queues, highest sample
    end_queued: float = 0.0  # the same, averaged over the last quarter of the run
    drained_after: float | None = None  # seconds after the last answer until all settled
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        load = self.load
        text = (
            f"{self.rate:7.0f}/s: {'ok  ' if self.passed else 'FAIL'} answered "
            f"{load.achieved:6.1f}/s, HTTP p50 {load.latency(0.5) * 1000:5.0f} ms "
            f"p99 {load.latency(0.99) * 1000:5.0f} ms"
        )
        if self.max_queued is not None:
            drained = "-" if self.drained_after is None else f"{self.drained_after:.1f} s"
            text += (
                f", queued max {self.max_queued} end {self.end_queued:.0f}, drained after {drained}"
            )
        text += f", others {self.cpu[OTHERS]:.0f} % CPU"
        if self.problems:
            text += f"  [{'; '.join(self.problems)}]"
        return text


def http_problems(load: LoadRun, max_http_p99: float) -> list[str]:
    """Why the web server did not keep up with `load`, if it did not."""
    problems = []
    if load.errors:
        problems.append(f"{load.errors} of {len(load.replies)} requests failed")
    if load.achieved < ACHIEVED_FRACTION * load.rate:
        problems.append(f"answered only {load.achieved:.0f}/s")
    if load.latency(0.99) > max_http_p99:
        problems.append(f"HTTP p99 {load.latency(0.99) * 1000:.0f} ms")
    return problems


@dataclass
class Search:
    """The trials of one rate search; `best` passed at the highest rate, `failed` did not."""

    trials: list[Trial]
    best: Trial | None
    failed: Trial | None


def find_max_rate(
    run_trial: Callable[[float], Trial], start: float, refine_steps: int, label: str
) -> Search:
    """Double the rate from `start` while trials pass, then bisect between the highest
    passing and the lowest failing rate `refine_steps` times."""
    trials: list[Trial] = []

    def attempt(rate: float) -> Trial:
        trial = run_trial(rate)
        trials.append(trial)
        print(f"  {label} {trial.line()}", flush=True)
        return trial

    best, failed, rate = None, None, start
    while failed is None:
        trial = attempt(rate)
        if trial.passed:
            best, rate = trial, rate * 2
        else:
            failed = trial
    while best is None and rate > 2:  # even the start rate failed: halve
        rate /= 2
        trial = attempt(rate)
        best, failed = (trial, failed) if trial.passed else (None, trial)
    for _ in range(refine_steps if best is not None else 0):
        middle = round((best.rate + failed.rate) / 2)
        if middle in (best.rate, failed.rate):
            break
        trial = attempt(middle)
        best, failed = (trial, failed) if trial.passed else (best, trial)
    return Search(trials, best, failed)
