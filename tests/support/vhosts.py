"""Vhosts made with `rabbitmqctl`, for a broker without the management API (the
distribution's RabbitMQ as installed): see tests/support/broker.py, which uses it.

Each `rabbitmqctl` call starts an Erlang VM (a second or more on a busy machine), so
vhosts are made and deleted `batch` at a time with one `rabbitmqctl eval` (or the
documented commands one by one where the broker's internals differ).
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
ACTING_USER = "tests"  # whom the broker's log names for these changes
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
    """Make every vhost in `names`, with all rights for `user`, in one rabbitmqctl call:
    one after the other, as `add_vhost` would (`import_definitions` makes them concurrently,
    which stalled a busy 3.10 broker for minutes), else with the documented commands."""
    script = (
        f"[begin ok = rabbit_vhost:add(V, {erlang_binary(ACTING_USER)}), "
        f"ok = rabbit_auth_backend_internal:set_permissions({erlang_binary(user)}, V, "
        f'<<".*">>, <<".*">>, <<".*">>, {erlang_binary(ACTING_USER)}) end '
        f"|| V <- {erlang_binaries(names)}]."
    )
    commands = [("add_vhost", name) for name in names] + [
        ("set_permissions", "-p", name, user, ".*", ".*", ".*") for name in names
    ]
    eval_else(script, commands)


def delete_vhosts(names: list[str]) -> None:
    """Delete every vhost in `names`: one `eval` call, else one `delete_vhost` each."""
    script = (  # idempotent: a vhost already gone is skipped, so a retry is safe
        f"[ok = rabbit_vhost:delete(V, {erlang_binary(ACTING_USER)}) "
        f"|| V <- {erlang_binaries(names)}, rabbit_vhost:exists(V)]."
    )
    eval_else(script, [("delete_vhost", name) for name in names])


def eval_else(script: str, commands: list[tuple[str, ...]]) -> None:
    """One `rabbitmqctl eval` of `script`; where the broker's internals differ (another
    version), the documented `commands` instead, one call each."""
    try:
        rabbitmqctl("eval", script)
    except RabbitmqctlRefused:
        for command in commands:
            rabbitmqctl(*command)


def erlang_binary(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'<<"{escaped}">>'


def erlang_binaries(texts: list[str]) -> str:
    return "[" + ", ".join(erlang_binary(text) for text in texts) + "]"


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
