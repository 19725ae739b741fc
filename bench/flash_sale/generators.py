"""The flash-sale bench's load generators: wrk where it is installed, else the shop's own.

Both send POSTs with a distinct customer each (a two-digit series per run, then a counter,
so no two runs share a phone), from `connections` keep-alive connections, closed loop, for
the seconds asked, and return a Load: answers by status, connection errors, the latency
distribution as (value in ms, weight) pairs, and the CPU seconds the generator spent.
wrk (a C program, an event loop per thread) reports its latencies as percentiles, so each
is weighted by the share of answers it stands for; the Python generator's weigh 1 each.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

from bench.support import HOST, BenchFailure
from loadtest.client import HTTP_ERRORS, REQUEST_TIMEOUT, Answer, Http
from loadtest.crowd import Crowd
from loadtest.stats import percentile

CUSTOMER_NAME = "Crowd Member"

# The latency distribution of one wrk run, as its values at these percentiles (the middle of
# each interval) and the width of each interval in percent; the rounds are pooled from them.
QUANTILE_GRID: list[tuple[float, float]] = [(k + 0.5, 1.0) for k in range(99)] + [
    (99.05 + k / 10, 0.1) for k in range(10)
]

# wrk calls request() for every request and response() for every answer, in each of its
# threads (each thread its own Lua state); setup() and done() run in the main state, which
# keeps the threads so that done() can add up their status counts.
WRK_SCRIPT = """
local threads = {}
local count = 0
local grid = {GRID}

function setup(thread)
  thread:set("thread_id", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
  headers = {["Content-Type"] = "application/json"}
end

function request()
  counter = counter + 1
  local phone = string.format("+%d%d%08d", SERIES, thread_id, counter)
  local body = '{"customer": {"name": "NAME", "phone": "' .. phone .. '"}}'
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local values = {}
  for _, p in ipairs(grid) do
    table.insert(values, string.format("%d", latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us": %d, "errors": %d, "statuses": {%s}, "quantiles_us": [%s]}\\n',
    summary.duration, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", "), table.concat(values, ", ")))
end
"""


@dataclass
class Load:
    """What one generator run saw."""

    seconds: float
    statuses: Counter[int]
    errors: int  # connection errors and timeouts (no answer at all)
    latencies_ms: list[tuple[float, float]]  # (value, weight); the weights add up to answers
    generator_cpu: float  # CPU seconds the generator spent

    @property
    def answers(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answers / self.seconds


class Generator:
    """Sends POSTs with a distinct customer each, from `connections` keep-alive connections."""

    name = ""
    _series = 10  # a two-digit phone prefix per run, so that no two runs share a customer

    def __init__(self, connections: int, threads: int) -> None:
        self.connections = connections
        self.threads = max(1, min(threads, connections, 9))

    def next_series(self) -> int:
        Generator._series = Generator._series + 1 if Generator._series < 99 else 11
        return Generator._series

    def slice_seconds(self, seconds: float) -> float:
        """The nearest duration this generator can run for."""
        return seconds

    def run(self, port: int, path: str, seconds: float) -> Load:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Wrk(Generator):
    name = "wrk"

    def __init__(self, connections: int, threads: int, binary: str) -> None:
        super().__init__(connections, threads)
        self.binary = binary

    def describe(self) -> str:
        version = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0]
        return (
            f"wrk ({version.split(' Copyright')[0].strip()}, C, event loop), "
            f"{self.threads} thread(s), {self.connections} keep-alive connections, closed loop"
        )

    def slice_seconds(self, seconds: float) -> float:
        return float(max(1, round(seconds)))  # wrk takes whole seconds

    def run(self, port: int, path: str, seconds: float) -> Load:
        grid = ", ".join(f"{p:g}" for p, _ in QUANTILE_GRID)
        script = (
            WRK_SCRIPT.replace("{GRID}", "{" + grid + "}")
            .replace("SERIES", str(self.next_series()))
            .replace("NAME", CUSTOMER_NAME)
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
            file.write(script)
        argv = [
            self.binary,
            "--threads",
            str(self.threads),
            "--connections",
            str(self.connections),
            "--duration",
            f"{self.slice_seconds(seconds):.0f}s",
            "--timeout",
            f"{REQUEST_TIMEOUT:.0f}s",
            "--script",
            file.name,
            f"http://{HOST}:{port}{path}",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            finished = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        finally:
            os.unlink(file.name)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next(
            (line for line in finished.stdout.splitlines() if line.startswith("WRK_RESULT ")), None
        )
        if finished.returncode != 0 or line is None:
            raise BenchFailure(f"wrk failed ({finished.returncode}): {finished.stderr.strip()}")
        result = json.loads(line.removeprefix("WRK_RESULT "))
        statuses = Counter({int(status): n for status, n in result["statuses"].items()})
        answered = sum(statuses.values())
        latencies = [
            (value / 1000, answered * width / 100)
            for value, (_, width) in zip(result["quantiles_us"], QUANTILE_GRID, strict=True)
        ]
        return Load(
            seconds=result["duration_us"] / 1e6,
            statuses=statuses,
            errors=result["errors"],
            latencies_ms=latencies if answered else [],
            generator_cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )


class PythonLoad(Generator):
    """The fallback: the shop's load generator (loadtest/crowd.py), a thread per connection,
    each with its http.client keep-alive connection; one process, so its GIL is its limit."""

    name = "python"
    reason = "wrk is not installed (apt-get install wrk)"

    def describe(self) -> str:
        return (
            f"Python (loadtest/crowd.py: threads + http.client keep-alive, one process, bound "
            f"by its GIL), {self.connections} threads and connections, closed loop; {self.reason}"
        )

    def run(self, port: int, path: str, seconds: float) -> Load:
        series = self.next_series()
        numbers = itertools.count()

        def purchase(client: Http) -> Answer | None:
            phone = f"+{series}{next(numbers):010d}"
            try:
                return client.request(
                    "POST", path, {"customer": {"name": CUSTOMER_NAME, "phone": phone}}
                )
            except HTTP_ERRORS:
                return None  # the client reconnects for the next one

        with Crowd(f"http://{HOST}:{port}", self.connections) as crowd:
            started = time.monotonic()
            loops = [crowd.keep_going(purchase, started + seconds) for _ in range(crowd.size)]
            answers = [answer for loop in loops for answer in loop.result()]
            elapsed = time.monotonic() - started
        statuses = Counter(answer.status for answer in answers if answer is not None)
        return Load(
            seconds=elapsed,
            statuses=statuses,
            errors=sum(answer is None for answer in answers),
            latencies_ms=[(1000 * answer.seconds, 1.0) for answer in answers if answer],
            generator_cpu=crowd.cpu_seconds,
        )


def pick_generator(choice: str, connections: int, threads: int) -> Generator:
    binary = shutil.which("wrk")
    if choice == "wrk" and binary is None:
        raise BenchFailure("--generator wrk, but wrk is not installed (apt-get install wrk)")
    if binary is not None and choice != "python":
        return Wrk(connections, threads, binary)
    generator = PythonLoad(connections, threads)
    if binary is not None:
        generator.reason = "chosen with --generator python (wrk is installed)"
    return generator


def pooled_percentile(latencies_ms: list[tuple[float, float]], fraction: float) -> float:
    """Nearest rank over (value, weight) pairs, as loadtest.stats.percentile counts."""
    return percentile([v for v, _ in latencies_ms], fraction, [w for _, w in latencies_ms])
