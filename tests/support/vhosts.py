"""Vhosts made with `rabbitmqctl`, for a broker without the management API (the
distribution's RabbitMQ as installed): see tests/support/broker.py, which uses it.

Each `rabbitmqctl` call starts an Erlang VM (a second or more on a busy machine), so
vhosts are made ahead, `batch` at a time, and deleted in batches, with the documented
commands.
Both run on one background thread: the next batch is made while a test runs, and a finished
test's vhost is deleted while the next one runs. `close()` waits for that thread, deletes
what is left (the spare vhosts too) and raises the first error it met.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from shop.process_tree import descendants

ENABLE_MANAGEMENT = "rabbitmq-plugins enable rabbitmq_management"
RABBITMQCTL_SECONDS = 120


class VhostError(RuntimeError):
    """A vhost could not be made or deleted; the message says why, in one sentence."""


class RabbitmqctlRefused(VhostError):
    """rabbitmqctl ran and exited non-zero (not: it could not run, or timed out)."""


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class RabbitmqctlVhosts:
    def __init__(self, user: str, batch: int = 1) -> None:
        self.user = user
        self.batch = batch
        self._spare: dict[str, list[str]] = {}
        self._next: dict[str, Future[list[str]]] = {}  # a batch being made, per prefix
        self._finished: list[str] = []
        self._deletions: list[Future[None]] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vhosts")

    def create(self, prefix: str) -> str:
        spare = self._spare.setdefault(prefix, [])
        if not spare:
            coming = self._next.pop(prefix, None)
            spare += coming.result() if coming else self._make(prefix)
        vhost = spare.pop()
        if not spare and self.batch > 1:  # the last spare one: make the next batch meanwhile
            self._next[prefix] = self._worker.submit(self._make, prefix)
        return vhost

    def delete(self, vhost: str) -> None:
        """Delete it now (batch 1), else soon: with its batch, on the background thread."""
        if self.batch == 1:
            delete_vhosts([vhost])
            return
        self._finished.append(vhost)
        if len(self._finished) >= self.batch:
            doomed, self._finished = self._finished, []
            self._deletions.append(self._worker.submit(delete_vhosts, doomed))

    def close(self) -> None:
        leftover = [vhost for spare in self._spare.values() for vhost in spare]
        for coming in self._next.values():
            with contextlib.suppress(VhostError):  # else nothing was made
                leftover += coming.result()
        self._spare.clear()
        self._next.clear()
        doomed, self._finished = self._finished + leftover, []
        if doomed:
            self._deletions.append(self._worker.submit(delete_vhosts, doomed))
        self._worker.shutdown(wait=True)
        errors = [future.exception() for future in self._deletions if future.exception()]
        self._deletions.clear()
        if errors:
            raise errors[0]

    def _make(self, prefix: str) -> list[str]:
        made = [new_name(prefix) for _ in range(self.batch)]
        import_vhosts(made, self.user)
        return made


def import_vhosts(names: list[str], user: str) -> None:
    """Make every vhost in `names`, with all rights for `user`, with the documented
    commands, one vhost after the other. (Not `rabbitmqctl eval` of the broker's
    internals, nor `import_definitions`: on the distribution's 3.10 broker both left it
    hung, for minutes, on a busy machine.)"""
    for name in names:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")


def delete_vhosts(names: list[str]) -> None:
    """Delete every vhost in `names`, one `delete_vhost` each (one already gone is fine)."""
    for name in names:
        try:
            rabbitmqctl("delete_vhost", name)
        except RabbitmqctlRefused as refusal:
            if "does_not_exist" not in str(refusal) and "not exist" not in str(refusal):
                raise


def rabbitmqctl(*args: str) -> None:
    """Run `rabbitmqctl -q ARGS`; at the deadline it and every process it started are
    killed (the wrapper script runs the real one through `su`, which would outlive it)."""
    try:
        process = subprocess.Popen(
            ["rabbitmqctl", "-q", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as error:
        raise VhostError(
            f"rabbitmqctl {args[0]} failed ({error}): without the management API, vhosts are "
            f"made with rabbitmqctl on the broker's host; or `{ENABLE_MANAGEMENT}`"
        ) from error
    try:
        stdout, stderr = process.communicate(timeout=RABBITMQCTL_SECONDS)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        raise VhostError(
            f"rabbitmqctl {args[0]} did not finish in {RABBITMQCTL_SECONDS} s: the broker "
            "does not answer"
        ) from None
    if process.returncode != 0:
        said = " ".join((stderr or stdout).split()) or "no output"
        raise RabbitmqctlRefused(
            f"rabbitmqctl {args[0]} exited {process.returncode} ({said[:300]}): run it as root "
            f"or the rabbitmq user, or `{ENABLE_MANAGEMENT}` so vhosts are made over HTTP"
        )
